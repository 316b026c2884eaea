// Placeholder until this command lands.
#include "commands.h"
#include <stdio.h>
int cmd_logits(int argc, char **argv) { fprintf(stderr, "dsv3: %s: not built yet\n", argv[0]); return 1; }
