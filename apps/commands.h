// Subcommands of ./dsv3. Each returns the process exit code (0 ok, 1 failure, 2 bad input/usage).
#pragma once
#include <stddef.h>
int cmd_info(int argc, char **argv);        // apps/cmd_info.c
int cmd_logits(int argc, char **argv);      // apps/cmd_logits.c
int cmd_tokenize(int argc, char **argv);    // apps/cmd_tokenize.c
int cmd_detokenize(int argc, char **argv);  // apps/cmd_tokenize.c
int cmd_tokenizer(int argc, char **argv);   // apps/cmd_tokenizer_train.c (tokenizer train)
int cmd_data(int argc, char **argv);        // apps/cmd_data.c (data prepare)
int cmd_fp8(int argc, char **argv);         // apps/cmd_fp8.c (fp8 cast, fp8 study)
int cmd_train_model(int argc, char **argv); // apps/cmd_train.c (the training recipe)
int cmd_grad(int argc, char **argv);        // apps/cmd_grad.c (training loss + gradients)
int cmd_plot(int argc, char **argv);        // apps/cmd_plot.c (PNG plots of a training run)
int cmd_generate(int argc, char **argv);    // apps/cmd_generate.c (text generation, MTP speculative decoding)
int cmd_chat(int argc, char **argv);        // apps/cmd_chat.c (interactive chat with the chat template)
int cmd_bench(int argc, char **argv);       // apps/cmd_bench.c (bench gemm / gemv of the model's kernels)

// Shared CLI helpers (apps/cli.c)
int cli_bad_input(void);                     // prints "dsv3: <dsv3_error()>" to stderr, returns 2
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3))); // returns 2
int cli_is_help(const char *arg);            // -h / --help
int cli_failure(void);                       // prints "dsv3: error: <dsv3_error()>", returns 1 (I/O failure)
// Flushes stdout and checks it (a full disk, /dev/full): on failure prints "dsv3 CMD: stdout: write
// failed: ..." and returns rc, or 1 when rc is 0. Every command that prints ends with it.
int cli_stdout_done(const char *cmd, int rc);
// Bytes of user input for a message: printable ASCII as is, other bytes (and \ and ') as \xNN, at
// most max_in input bytes, "..." when cut. Returns buf.
const char *cli_escape(char *buf, size_t cap, const char *s, size_t len, size_t max_in);

// The training-precision options shared by train, grad and logits (apps/cli_precision.c):
//   --precision fp32|bf16|fp8, and the FP8 recipe knobs --fp8-accum exact|hopper14|promote:N,
//   --scale-format amax|ue8m0, --fp8-dgrad tile|block, --fp8-wgrad-x retile|high.
#include "model/train.h"
typedef struct {
    int precision;           // 0 fp32, 1 bf16, 2 fp8
    dsv3_fp8_recipe fp8;     // the FP8 recipe (used when precision is 2)
    int fp8_knob_set;        // an FP8 knob was given (refused unless precision is fp8)
} cli_precision;
void cli_precision_default(cli_precision *p);
// If opt is one of the options above: parses v into p and returns 1 (or, on a bad value, prints the
// usage error of cmd and sets *bad = 1). Returns 0 for any other option.
int cli_precision_opt(const char *cmd, const char *opt, const char *v, cli_precision *p, int *bad);
// After parsing: refuses FP8 knobs without --precision fp8. 0, or 2 after printing the error.
int cli_precision_check(const char *cmd, const cli_precision *p);
// The backend of a precision (fp8 runs its non-FP8 GEMMs on the bf16 backend).
const dsv3_backend *cli_precision_backend(const cli_precision *p);
extern const char *const cli_precision_help; // option lines for --help
