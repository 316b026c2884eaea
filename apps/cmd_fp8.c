// Placeholder until this command lands.
#include "commands.h"
#include <stdio.h>
int cmd_fp8(int argc, char **argv) { fprintf(stderr, "dsv3: %s: not built yet\n", argv[0]); return 1; }
