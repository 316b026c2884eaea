// dsv3 data prepare: documents -> tokens (+FIM) -> packed rows -> shards + manifest (src/train/data.c);
// dsv3 data verify: open a prepared dataset as the trainer does, optionally reading every byte.
#include "commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *HELP =
    "usage: dsv3 data prepare --tokenizer FILE --out DIR [--seq-len N] [--fim-rate R] [--val-fraction F]\n"
    "                         [--seed S] [--packing bestfit|concat] [--no-bos] [--shard-rows N]\n"
    "                         [--shuffle-buffer T] [--threads T] [--quiet] INPUTS...\n"
    "       dsv3 data verify DIR [--verify] [--split train|val]\n"
    "\n"
    "prepare: streams INPUTS into packed training rows: DIR/g<G>-train-NNNNN.bin, DIR/g<G>-val-NNNNN.bin\n"
    "and DIR/manifest.json (format in docs/DATA.md), with memory bounded by a few shards. Same inputs +\n"
    "seed -> identical bytes, whatever the thread count. DIR is locked while a run writes (a second\n"
    "writer exits 2: \"in use by pid N\"); the previous dataset in DIR stays readable until the new\n"
    "manifest replaces it, and after any failure.\n"
    "\n"
    "  --tokenizer FILE    HF tokenizer.json (needs EOS; BOS unless --no-bos; FIM tokens if --fim-rate > 0)\n"
    "  --out DIR           output folder (created if missing)\n"
    "  --seq-len N         L: each row holds L+1 tokens (inputs row[0..L), targets row[1..L]) (default 1024)\n"
    "  --fim-rate R        fraction of documents rewritten as PSM fill-in-the-middle (default 0.1)\n"
    "  --val-fraction F    fraction of documents held out for validation (default 0.01)\n"
    "  --seed S            seed for the split, FIM, shuffles and packing order (default 1)\n"
    "  --packing P         bestfit (default; DeepSeek-V3 / Ding et al.: whole chunks, PAD-filled, mask\n"
    "                      targets == pad_id) or concat (one stream cut into rows, no padding)\n"
    "  --no-bos            do not start each document with BOS\n"
    "  --shard-rows N      rows per shard file (default 4096)\n"
    "  --shuffle-buffer T  tokens held by the document shuffle buffer (default: max(shard-rows x (L+1),\n"
    "                      4194304); 0 keeps the input order)\n"
    "  --threads T         tokenizer threads (default: OpenMP default)\n"
    "  --quiet             no progress on stderr\n"
    "\n"
    "Documents: a .jsonl input gives one per non-empty line (its \"text\" string); any other file is one\n"
    "document. Each document becomes [BOS] text [EOS], or with probability R\n"
    "[BOS] <\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c> prefix <\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c> suffix "
    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c> middle [EOS]\n"
    "(cut at two random character positions).\n"
    "\n"
    "verify: opens the dataset in DIR (or the manifest file DIR) as the trainer does and prints its run id\n"
    "and, per split, shards, rows and a digest of the rows. Each shard is checked against the manifest\n"
    "(size, header, run id, checksum, a sampled checksum of its bytes); --verify also reads every byte\n"
    "(full payload checksums, ids < vocab size).\n"
    "\n"
    "Exit status: 0 ok; 1 stdout cannot be written (verify); 2 bad input or usage, DIR in use, a dataset\n"
    "that fails verification, or an output that cannot be written (prepare).\n";

static int parse_u64(const char *s, unsigned long long lo, unsigned long long hi, unsigned long long *out) {
    char *end;
    errno = 0;
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_frac(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 1)) return -1;
    *out = v;
    return 0;
}

static int cmd_prepare(int argc, char **argv) {
    const char *C = "data prepare";
    dsv3_data_prepare_opts o = {.seq_len = 1024, .fim_rate = 0.1, .val_fraction = 0.01, .seed = 1, .add_bos = 1,
                                .bestfit = 1, .shard_rows = 4096, .shuffle_tokens = -1, .threads = 0, .progress = 1};
    unsigned long long v;
    int nin = 0;
    char **inputs = dsv3_calloc((size_t)argc + 1, sizeof *inputs);
#define FAIL(...) do { free(inputs); return cli_usage_error(C, __VA_ARGS__); } while (0)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (cli_is_help(a)) { fputs(HELP, stdout); free(inputs); return 0; }
        if (!strcmp(a, "--tokenizer") && has) o.tokenizer_path = argv[++i];
        else if (!strcmp(a, "--out") && has) o.out_dir = argv[++i];
        else if (!strcmp(a, "--seq-len") && has) {
            if (parse_u64(argv[++i], 1, 1 << 24, &v)) FAIL("--seq-len must be an integer in [1, 16777216], got '%s'", argv[i]);
            o.seq_len = (int)v;
        } else if (!strcmp(a, "--fim-rate") && has) {
            if (parse_frac(argv[++i], &o.fim_rate)) FAIL("--fim-rate must be a number in [0, 1], got '%s'", argv[i]);
        } else if (!strcmp(a, "--val-fraction") && has) {
            if (parse_frac(argv[++i], &o.val_fraction)) FAIL("--val-fraction must be a number in [0, 1], got '%s'", argv[i]);
        } else if (!strcmp(a, "--seed") && has) {
            if (parse_u64(argv[++i], 0, ~0ull, &v)) FAIL("--seed must be a non-negative integer, got '%s'", argv[i]);
            o.seed = v;
        } else if (!strcmp(a, "--packing") && has) {
            i++;
            if (!strcmp(argv[i], "bestfit")) o.bestfit = 1;
            else if (!strcmp(argv[i], "concat")) o.bestfit = 0;
            else FAIL("--packing must be bestfit or concat, got '%s'", argv[i]);
        } else if (!strcmp(a, "--shard-rows") && has) {
            if (parse_u64(argv[++i], 1, 1ull << 40, &v)) FAIL("--shard-rows must be a positive integer, got '%s'", argv[i]);
            o.shard_rows = v;
        } else if (!strcmp(a, "--shuffle-buffer") && has) {
            if (parse_u64(argv[++i], 0, 1ull << 40, &v)) FAIL("--shuffle-buffer must be an integer in [0, 2^40] (tokens), got '%s'", argv[i]);
            o.shuffle_tokens = (int64_t)v;
        } else if (!strcmp(a, "--threads") && has) {
            if (parse_u64(argv[++i], 1, 1024, &v)) FAIL("--threads must be in [1, 1024], got '%s'", argv[i]);
            o.threads = (int)v;
        } else if (!strcmp(a, "--no-bos")) o.add_bos = 0;
        else if (!strcmp(a, "--quiet")) o.progress = 0;
        else if (a[0] == '-' && a[1]) FAIL("unknown option or missing value: %s", a);
        else inputs[nin++] = argv[i];
    }
    if (!o.tokenizer_path || !o.out_dir || !nin) FAIL("need --tokenizer, --out and at least one input");
#undef FAIL
    dsv3_tokenizer *tok = dsv3_tokenizer_load(o.tokenizer_path);
    if (!tok) { free(inputs); return cli_bad_input(); }
    dsv3_data_prepare_stats st;
    int rc = dsv3_data_prepare_files(tok, (const char *const *)inputs, nin, &o, &st);
    free(inputs);
    dsv3_tokenizer_free(tok);
    if (rc) return cli_bad_input();
    uint64_t toks = st.doc_tokens[0] + st.doc_tokens[1];
    if (o.progress)
        fprintf(stderr, "data prepare: %llu documents, %llu tokens (train %llu, val %llu) from %.1f MB in %.2fs "
                "(%.0f tokens/s, %.2f MB/s) -> %s (run %s, generation %llu)\n",
                (unsigned long long)(st.documents[0] + st.documents[1]), (unsigned long long)toks,
                (unsigned long long)st.doc_tokens[0], (unsigned long long)st.doc_tokens[1], st.file_bytes / 1e6,
                st.seconds_total, toks / st.seconds_total, st.file_bytes / 1e6 / st.seconds_total, o.out_dir,
                st.run_id, (unsigned long long)st.generation);
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    const char *C = "data verify", *dir = NULL, *only = NULL;
    int verify = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
        if (!strcmp(a, "--verify")) verify = 1;
        else if (!strcmp(a, "--split") && i + 1 < argc) {
            only = argv[++i];
            if (strcmp(only, "train") && strcmp(only, "val"))
                return cli_usage_error(C, "--split must be train or val, got '%s'", only);
        } else if (a[0] == '-' && a[1]) return cli_usage_error(C, "unknown option or missing value: %s", a);
        else if (dir) return cli_usage_error(C, "one dataset at a time (got '%s' and '%s')", dir, a);
        else dir = a;
    }
    if (!dir) return cli_usage_error(C, "need the dataset folder (or its manifest.json)");
    const char *splits[2] = {"train", "val"};
    for (int sp = 0; sp < 2; sp++) {
        if (only && strcmp(only, splits[sp])) continue;
        dsv3_data *d = dsv3_data_open(dir, splits[sp], verify);
        if (!d) return cli_bad_input();
        if (sp == 0 || only) printf("run_id %s\ngeneration %llu\n", dsv3_data_run_id(d),
                                    (unsigned long long)dsv3_data_generation(d));
        printf("%s shards %d rows %llu row_tokens %d digest %016llx\n", splits[sp], dsv3_data_num_shards(d),
               (unsigned long long)dsv3_data_num_rows(d), dsv3_data_seq_len(d) + 1,
               (unsigned long long)dsv3_data_digest(d));
        dsv3_data_close(d);
    }
    printf("ok %s (%s)\n", dir, verify ? "full verify: every byte checked" : "sizes, headers, run id, checksums, sampled bytes");
    return cli_stdout_done("data verify", 0);
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(argv[1], "verify")) return cmd_verify(argc - 1, argv + 1);
    return cli_usage_error("data", "unknown subcommand '%s' (expected: prepare, verify)", argv[1]);
}
