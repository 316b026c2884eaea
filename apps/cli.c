#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cli_bad_input(void) {
    fprintf(stderr, "dsv3: error: %s\n", dsv3_error());
    return DSV3_EXIT_BADINPUT;
}

int cli_failure(void) {
    fprintf(stderr, "dsv3: error: %s\n", dsv3_error());
    return 1;
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

int cli_stdout_done(const char *cmd, int rc) {
    if (dsv3_stdout_flush() == 0) return rc;
    fprintf(stderr, "dsv3 %s: %s\n", cmd, dsv3_error());
    return rc ? rc : 1;
}

const char *cli_escape(char *buf, size_t cap, const char *s, size_t len, size_t max_in) {
    static const char hex[] = "0123456789abcdef";
    size_t j = 0, i = 0;
    if (cap == 0) return buf;
    for (; i < len && i < max_in; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
            if (j + 1 >= cap) break;
            buf[j++] = (char)c;
        } else {
            if (j + 4 >= cap) break;
            buf[j++] = '\\', buf[j++] = 'x', buf[j++] = hex[c >> 4], buf[j++] = hex[c & 15];
        }
    }
    if (i < len && j + 3 < cap) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = 0;
    return buf;
}
