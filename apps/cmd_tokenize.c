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
    "                    naming its line number.\n"
    "\n"
    "Exit status: 0 ok, 2 bad input or usage.\n";

static const char *DETOKENIZE_HELP =
    "usage: dsv3 detokenize [--tokenizer FILE] [--skip-special]\n"
    "\n"
    "Reads token ids (decimal, separated by whitespace) from stdin and writes the decoded bytes to\n"
    "stdout. Bytes are written as they are, so detokenize(tokenize(x)) == x even for invalid UTF-8.\n"
    "\n"
    "  --tokenizer FILE  HF tokenizer.json (default " DEFAULT_TOKENIZER ")\n"
    "  --skip-special    drop added tokens marked special (BOS, EOS, ...)\n"
    "\n"
    "Exit status: 0 ok, 2 bad input (an id that is not a number or not in the vocabulary) or usage.\n";

static int write_ids_line(FILE *f, const int32_t *ids, size_t n, int json) {
    if (json) fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? (json ? ",%d" : " %d") : "%d", (int)ids[i]);
    if (json) fputc(']', f);
    fputc('\n', f);
    return ferror(f) ? -1 : 0;
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
    char *text = dsv3_read_file("-", &len);
    if (!text) {
        dsv3_tokenizer_free(t);
        return cli_bad_input();
    }
    int rc = 0, werr = 0; // werr: a write to stdout failed (reported once, below)
    int32_t *ids = NULL;
    size_t n;
    if (!jsonl) {
        if (dsv3_tokenizer_encode(t, text, len, bos, &ids, &n)) rc = cli_bad_input();
        else if (write_ids_line(stdout, ids, n, 0)) werr = 1;
        free(ids);
    } else {
        size_t pos = 0;
        long lineno = 0;
        while (pos < len && rc == 0 && !werr) {
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
            if (r < 0) {
                dsv3_error_context("stdin line %ld", lineno);
                rc = cli_bad_input();
            } else if (dsv3_tokenizer_encode(t, tx, tl, bos, &ids, &n)) {
                dsv3_error_context("stdin line %ld", lineno);
                rc = cli_bad_input();
            } else {
                if (write_ids_line(stdout, ids, n, 1)) werr = 1;
                free(ids);
            }
            cJSON_Delete(obj);
        }
    }
    if ((fflush(stdout) != 0 || werr) && rc == 0) {
        fprintf(stderr, "dsv3 tokenize: write error: %s\n", strerror(errno));
        rc = 1;
    }
    free(text);
    dsv3_tokenizer_free(t);
    return rc;
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
    char *text = dsv3_read_file("-", &len);
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
            dsv3_errorf("stdin: token %zu \"%.*s\" is not an id in 0..%d", n + 1, (int)(w - p > 40 ? 40 : w - p), p,
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
        else if (fwrite(out, 1, ol, stdout) != ol || fflush(stdout) != 0) {
            fprintf(stderr, "dsv3 detokenize: write error: %s\n", strerror(errno));
            rc = 1;
        }
        free(out);
    }
    free(ids);
    free(text);
    dsv3_tokenizer_free(t);
    return rc;
}
