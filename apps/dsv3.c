// dsv3: one command-line tool with subcommands.
#include "commands.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const struct { const char *name; int (*fn)(int, char **); const char *help; } k_cmds[] = {
    {"info", cmd_info, "parameter counts, KV-cache bytes and FLOPs of a model config"},
    {"logits", cmd_logits, "run the forward pass on a sequence of ids and write logits (.npy)"},
    {"generate", cmd_generate, "generate text with the latent KV cache (plain or MTP speculative decoding)"},
    {"chat", cmd_chat, "interactive chat with the model's chat template"},
    {"train", cmd_train_model, "train a DeepSeek-V3 model with the paper's recipe (HF checkpoints out)"},
    {"grad", cmd_grad, "training loss and fp32 gradients of every parameter for a batch of rows"},
    {"plot", cmd_plot, "PNG plots of a training run (loss, lr, expert load) from its metrics.jsonl"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids (HF tokenizer.json)"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text"},
    {"tokenizer", cmd_tokenizer, "tokenizer tools: train a byte-level BPE"},
    {"data", cmd_data, "data pipeline: prepare packed training shards"},
    {"bench", cmd_bench, "time the matrix kernels the model uses: bench gemm, bench gemv"},
    {"fp8", cmd_fp8, "FP8 numerics: cast values, run the accumulation-precision study"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsv3 <command> [options]   (dsv3 <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) fprintf(f, "  %-11s %s\n", k_cmds[i].name, k_cmds[i].help);
}

int main(int argc, char **argv) {
    // OpenMP threads that spin while waiting make every fork/join wait a scheduler time slice when
    // another process holds a core (2-core machines: decode ran 30x slower with libgomp's default
    // spin of 300,000 iterations). Waiting that never spins costs a sleep and wake-up per barrier
    // instead (a 256 x 512 x 1024 GEMM ran at 0.6x of spinning waiters, a tiny training step's wall
    // time +20 %). The default is therefore passive with a short spin first: GOMP_SPINCOUNT=3000 (a
    // few microseconds: next to nothing when the core is taken, enough for back-to-back barriers).
    // libgomp reads both when it is loaded, so they are set by running this program again with them;
    // explicit values are respected (docs/PERF.md).
    const char *wp = getenv("OMP_WAIT_POLICY");
    int again = 0;
    if (!wp) { setenv("OMP_WAIT_POLICY", "passive", 1); wp = "passive"; again = 1; }
    if (!getenv("GOMP_SPINCOUNT") && !strcasecmp(wp, "passive")) { setenv("GOMP_SPINCOUNT", "3000", 1); again = 1; }
    if (again) execv("/proc/self/exe", argv); // returns only on failure: carry on with the default policy
    if (argc < 2) { usage(stderr); return 2; }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (strcmp(argv[1], k_cmds[i].name) == 0) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsv3: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
