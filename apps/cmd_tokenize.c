// dsv3 tokenize / dsv3 detokenize: text <-> token ids with an HF tokenizer.json.
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TOKENIZER "models/deepseek-v3/tokenizer.json"

static const char *TOKENIZE_HELP =
    "usage: dsv3 tokenize [--tokenizer FILE] [--bos] [--jsonl]\n"
    "\n"
    "Reads all of stdin as one text (any bytes) and prints its token ids on one line, separated by\n"
    "single spaces. Ids are exactly those of HF tokenizers' encode(text, add_special_tokens=False);\n"
    "special tokens written in the text (e.g. <\xef\xbd\x9cUser\xef\xbd\x9c>) are recognized.\n"
    "\n"
    "  --tokenizer FILE  HF tokenizer.json (default " DEFAULT_TOKENIZER ");\n"
    "                    BOS/EOS names come from tokenizer_config.json in the same directory\n"
    "  --bos             prepend the BOS id\n"
    "  --jsonl           each stdin line is a JSON object with a \"text\" string; each output line\n"
    "                    is the JSON array of its ids (blank lines are skipped). A bad line (not\n"
    "                    one JSON object, no string \"text\", a \\u0000 escape) is an error (exit 2)\n"
    "                    naming its line number, and nothing is printed: all lines are encoded\n"
    "                    before the first is written.\n"
    "\n"
    "stdin is read whole, at most 1 GiB (use `dsv3 data prepare` for a corpus).\n"
    "Exit status: 0 ok, 1 stdout could not be written, 2 bad input or usage.\n";

static const char *DETOKENIZE_HELP =
    "usage: dsv3 detokenize [--tokenizer FILE] [--skip-special]\n"
    "\n"
    "Reads token ids (decimal, separated by whitespace) from stdin and writes the decoded bytes to\n"
    "stdout. Bytes are written as they are, so detokenize(tokenize(x)) == x even for invalid UTF-8.\n"
    "\n"
    "  --tokenizer FILE  HF tokenizer.json (default " DEFAULT_TOKENIZER ")\n"
    "  --skip-special    drop added tokens marked special (BOS, EOS, ...)\n"
    "\n"
    "stdin is read whole, at most 1 GiB.\n"
    "Exit status: 0 ok, 1 stdout could not be written, 2 bad input (an id that is not a number or not in\n"
    "the vocabulary) or usage.\n";

#define MAX_INPUT ((size_t)1 << 30) // stdin is read whole: 1 GiB at most

static void write_ids_line(FILE *f, const int32_t *ids, size_t n, int json) {
    if (json) fputc('[', f);
    for (size_t i = 0; i < n && !ferror(f); i++) fprintf(f, i ? (json ? ",%d" : " %d") : "%d", (int)ids[i]);
    if (json) fputc(']', f);
    fputc('\n', f);
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = DEFAULT_TOKENIZER;
    int bos = 0, jsonl = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(TOKENIZE_HELP, stdout);
            return 0;
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--bos") == 0) {
            bos = 1;
        } else if (strcmp(argv[i], "--jsonl") == 0) {
            jsonl = 1;
        } else {
            return cli_usage_error("tokenize", "unknown or incomplete option '%s'", argv[i]);
        }
    }
    dsv3_tokenizer *t = dsv3_tokenizer_load(path);
    if (!t) return cli_bad_input();
    size_t len;
    char *text = dsv3_read_file_max("-", MAX_INPUT, "tokenize input (use data prepare for a corpus)", &len);
    if (!text) {
        dsv3_tokenizer_free(t);
        return cli_bad_input();
    }
    int rc = 0;
    int32_t *ids = NULL;
    size_t n;
    if (!jsonl) {
        if (dsv3_tokenizer_encode(t, text, len, bos, &ids, &n)) rc = cli_bad_input();
        else write_ids_line(stdout, ids, n, 0);
        free(ids);
    } else {
        // Every line is parsed and encoded before anything is printed, so a bad line anywhere gives
        // exit 2 and no output at all. The ids are held as int32 (as in the plain mode): 4 bytes a token.
        int32_t *all = NULL;
        size_t nall = 0, capall = 0, nlines = 0, caplines = 0;
        size_t *line_end = NULL; // line i's ids are all[line_end[i-1] .. line_end[i])
        size_t pos = 0;
        long lineno = 0;
        while (pos < len && rc == 0) {
            char *nl = memchr(text + pos, '\n', len - pos);
            size_t end = nl ? (size_t)(nl - text) : len;
            lineno++;
            const char *line = text + pos;
            size_t ll = end - pos;
            pos = end + 1;
            cJSON *obj;
            const char *tx;
            size_t tl;
            // Same line rules as `data prepare` / `tokenizer train` (src/train/data.c): blank lines are
            // skipped; trailing bytes after the object and \u0000 escapes are errors.
            int r = dsv3_jsonl_line_text(line, ll, &obj, &tx, &tl);
            if (r == 0) continue;
            if (r < 0 || dsv3_tokenizer_encode(t, tx, tl, bos, &ids, &n)) {
                dsv3_error_context("stdin line %ld", lineno);
                rc = cli_bad_input();
            } else {
                if (nall + n > capall) {
                    capall = (nall + n) * 2 + 1024;
                    all = dsv3_realloc(all, capall * sizeof *all);
                }
                memcpy(all + nall, ids, n * sizeof *ids);
                nall += n;
                free(ids);
                if (nlines == caplines) caplines = caplines ? 2 * caplines : 1024, line_end = dsv3_realloc(line_end, caplines * sizeof *line_end);
                line_end[nlines++] = nall;
            }
            if (r > 0) cJSON_Delete(obj);
        }
        for (size_t i = 0; rc == 0 && i < nlines && !ferror(stdout); i++) {
            size_t b0 = i ? line_end[i - 1] : 0;
            write_ids_line(stdout, all + b0, line_end[i] - b0, 1);
        }
        free(all);
        free(line_end);
    }
    free(text);
    dsv3_tokenizer_free(t);
    return cli_stdout_done("tokenize", rc);
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = DEFAULT_TOKENIZER;
    int skip = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(DETOKENIZE_HELP, stdout);
            return 0;
        } else if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--skip-special") == 0) {
            skip = 1;
        } else {
            return cli_usage_error("detokenize", "unknown or incomplete option '%s'", argv[i]);
        }
    }
    dsv3_tokenizer *t = dsv3_tokenizer_load(path);
    if (!t) return cli_bad_input();
    size_t len;
    char *text = dsv3_read_file_max("-", MAX_INPUT, "detokenize input", &len);
    if (!text) {
        dsv3_tokenizer_free(t);
        return cli_bad_input();
    }
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')) p++;
        if (p >= end) break;
        char *q = p;
        long v = 0;
        int digits = 0;
        while (q < end && *q >= '0' && *q <= '9' && digits < 10) v = v * 10 + (*q++ - '0'), digits++;
        if (!digits || (q < end && !(*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ',')) ||
            v >= dsv3_tokenizer_vocab_size(t)) {
            char *w = p;
            while (w < end && !(*w == ' ' || *w == '\t' || *w == '\n' || *w == '\r' || *w == ',')) w++;
            char esc[256];
            dsv3_errorf("stdin: token %zu '%s' is not an id in 0..%d", n + 1, cli_escape(esc, sizeof esc, p, (size_t)(w - p), 40),
                        dsv3_tokenizer_vocab_size(t) - 1);
            rc = cli_bad_input();
            break;
        }
        if (n == cap) cap = cap ? 2 * cap : 1024, ids = dsv3_realloc(ids, cap * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = q;
    }
    if (rc == 0) {
        size_t ol;
        char *out = dsv3_tokenizer_decode(t, ids, n, skip, &ol);
        if (!out) rc = cli_bad_input();
        else fwrite(out, 1, ol, stdout);
        free(out);
    }
    free(ids);
    free(text);
    dsv3_tokenizer_free(t);
    return cli_stdout_done("detokenize", rc);
}
