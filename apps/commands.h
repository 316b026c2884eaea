// Subcommands of ./dsv3. Each returns the process exit code (0 ok, 1 failure, 2 bad input/usage).
#pragma once
int cmd_info(int argc, char **argv);        // apps/cmd_info.c
int cmd_logits(int argc, char **argv);      // apps/cmd_logits.c
int cmd_tokenize(int argc, char **argv);    // apps/cmd_tokenize.c
int cmd_detokenize(int argc, char **argv);  // apps/cmd_tokenize.c
int cmd_tokenizer(int argc, char **argv);   // apps/cmd_tokenizer_train.c (tokenizer train)
int cmd_data(int argc, char **argv);        // apps/cmd_data.c (data prepare)
int cmd_fp8(int argc, char **argv);         // apps/cmd_fp8.c (fp8 cast, fp8 study)

// Shared CLI helpers (apps/cli.c)
int cli_bad_input(void);                     // prints "dsv3: <dsv3_error()>" to stderr, returns 2
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3))); // returns 2
int cli_is_help(const char *arg);            // -h / --help
