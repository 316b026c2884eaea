// dsv3 tokenizer train: learn a byte-level BPE with DeepSeek-V3 pre-tokenization (src/tokenizer/bpe_train.c)
// and write an HF tokenizer.json.
#include "commands.h"
#include "core/error.h"
#include "tokenizer/bpe_train.h"
#include "train/data.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *HELP =
    "usage: dsv3 tokenizer train --vocab-size N --out FILE [--min-frequency F] [--threads T] [--quiet] FILES...\n"
    "\n"
    "Trains a byte-level BPE on FILES with DeepSeek-V3's pre-tokenizer and writes an HF tokenizer.json\n"
    "(same normalizer / pre_tokenizer / post_processor / decoder as DeepSeek-V3; loads in HF tokenizers\n"
    "and in dsv3 tokenize). The merges are those HF's BpeTrainer learns from the same words (same\n"
    "tie-break: equal counts -> smaller (left id, right id)).\n"
    "\n"
    "  --vocab-size N     model vocab size, ids 0..N-1: <\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c> 0, "
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c> 1,\n"
    "                     <\xef\xbd\x9c\xe2\x96\x81pad\xe2\x96\x81\xef\xbd\x9c> 2, the 256 byte tokens, then merges (N >= 259). "
    "The added tokens\n"
    "                     fim_hole, fim_begin, fim_end, User, Assistant get ids N..N+4.\n"
    "  --out FILE         tokenizer.json to write (atomically)\n"
    "  --min-frequency F  only merge pairs seen at least F times (default 0: any)\n"
    "  --threads T        threads for pre-tokenization (default: OpenMP default)\n"
    "  --quiet            no progress on stderr\n"
    "\n"
    "Inputs: a .jsonl file gives one document per line (its \"text\" field); any other file is one\n"
    "document. Exit status: 0 ok, 2 bad input or usage.\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int parse_long(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int cmd_train(int argc, char **argv) {
    const char *C = "tokenizer train";
    long long vocab = -1, minf = 0, threads = 0;
    const char *out = NULL;
    int quiet = 0, nfiles = 0;
    char **files = dsv3_calloc((size_t)argc + 1, sizeof *files);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(HELP, stdout); free(files); return 0; }
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--vocab-size") && has_val) {
            if (parse_long(argv[++i], 259, 1 << 24, &vocab)) { free(files); return cli_usage_error(C, "--vocab-size must be an integer in [259, 16777216], got '%s'", argv[i]); }
        } else if (!strcmp(a, "--min-frequency") && has_val) {
            if (parse_long(argv[++i], 0, (1ll << 62), &minf)) { free(files); return cli_usage_error(C, "--min-frequency must be a non-negative integer, got '%s'", argv[i]); }
        } else if (!strcmp(a, "--threads") && has_val) {
            if (parse_long(argv[++i], 1, 1024, &threads)) { free(files); return cli_usage_error(C, "--threads must be in [1, 1024], got '%s'", argv[i]); }
        } else if (!strcmp(a, "--out") && has_val) {
            out = argv[++i];
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            free(files);
            return cli_usage_error(C, "unknown option or missing value: %s", a);
        } else {
            files[nfiles++] = argv[i];
        }
    }
    if (vocab < 0 || !out || !nfiles) {
        free(files);
        return cli_usage_error(C, "need --vocab-size, --out and at least one input file");
    }
    double t0 = now_s();
    dsv3_doclist dl = {0};
    for (int i = 0; i < nfiles; i++)
        if (dsv3_doclist_read(&dl, files[i])) { dsv3_doclist_free(&dl); free(files); return cli_bad_input(); }
    free(files);
    double t1 = now_s();
    const char **texts = dsv3_malloc((dl.n + 1) * sizeof *texts);
    size_t *lens = dsv3_malloc((dl.n + 1) * sizeof *lens);
    for (size_t i = 0; i < dl.n; i++) texts[i] = dl.docs[i].text, lens[i] = dl.docs[i].len;
    dsv3_bpe_trainer *t = dsv3_bpe_trainer_new();
    int rc = dsv3_bpe_trainer_feed_many(t, texts, lens, dl.n, (int)threads);
    double t2 = now_s();
    if (!quiet)
        fprintf(stderr, "tokenizer train: %zu documents, %.1f MB read in %.2fs; %zu distinct words counted in %.2fs\n",
                dl.n, dl.bytes / 1e6, t1 - t0, dsv3_bpe_trainer_num_words(t), t2 - t1);
    free(texts), free(lens);
    dsv3_doclist_free(&dl);
    dsv3_bpe_train_opts o = {.vocab_size = (int)vocab, .min_frequency = minf, .progress = !quiet};
    if (!rc) rc = dsv3_bpe_trainer_train(t, &o);
    double t3 = now_s();
    if (!rc) rc = dsv3_bpe_trainer_save(t, out);
    if (!rc && !quiet)
        fprintf(stderr, "tokenizer train: %d tokens (%d merges) + 8 special/added; merges %.2fs; total %.2fs -> %s\n",
                dsv3_bpe_trainer_num_tokens(t), dsv3_bpe_trainer_num_merges(t), t3 - t2, now_s() - t0, out);
    dsv3_bpe_trainer_free(t);
    return rc ? cli_bad_input() : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    return cli_usage_error("tokenizer", "unknown subcommand '%s' (expected: train)", argv[1]);
}
