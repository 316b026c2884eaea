// dsv3 plot: PNG plots of a training run's metrics.jsonl (src/train/plot.c, gnuplot).
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "train/plot.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 plot RUN_DIR [--out DIR]\n"
            "\n"
            "Reads RUN_DIR/metrics.jsonl (written by `dsv3 train`) and draws, with gnuplot:\n"
            "  loss.png         train loss (main, MTP = mtp / lambda) and validation loss vs tokens\n"
            "  lr.png           learning rate (and the MTP weight lambda) vs step\n"
            "  expert_load.png  heatmap of MaxVio_batch per MoE layer over steps\n"
            "\n"
            "  --out DIR   where the PNGs go (default RUN_DIR; created if missing)\n"
            "\n"
            "Skipped (non-finite) steps are left out; after a resume from an earlier checkpoint the later\n"
            "records of a repeated step replace the earlier ones. gnuplot is $DSV3_GNUPLOT or `gnuplot` on\n"
            "PATH (Debian: gnuplot-nox); the pngcairo terminal is used, png where cairo is missing.\n"
            "\n"
            "Exit status: 0 written, 1 gnuplot missing or failed, 2 bad input (a missing or malformed\n"
            "metrics file: the message names the line).\n");
}

int cmd_plot(int argc, char **argv) {
    const char *run = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { usage(stdout); return cli_stdout_done("plot", 0); }
        if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) return cli_usage_error("plot", "--out needs a value");
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("plot", "unknown option '%s'", a);
        } else if (run) {
            return cli_usage_error("plot", "one RUN_DIR only ('%s' and '%s')", run, a);
        } else {
            run = a;
        }
    }
    if (!run) return cli_usage_error("plot", "RUN_DIR is required");
    const int rc = dsv3_plot_run(run, out);
    if (rc) {
        fprintf(stderr, "dsv3 plot: %s%s\n", rc == 1 ? "error: " : "", dsv3_error());
        return rc;
    }
    const char *d = out ? out : run;
    printf("%s/loss.png\n%s/lr.png\n%s/expert_load.png\n", d, d, d);
    return cli_stdout_done("plot", 0);
}
