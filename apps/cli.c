#include "commands.h"
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cli_bad_input(void) {
    fprintf(stderr, "dsv3: error: %s\n", dsv3_error());
    return DSV3_EXIT_BADINPUT;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "dsv3 %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(try: dsv3 %s --help)\n", cmd);
    return DSV3_EXIT_BADINPUT;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }
