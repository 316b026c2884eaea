// dsv3 chat: an interactive chat on a terminal (or a pipe) with the DeepSeek-V3 chat template.
#include "commands.h"
#include "infer_cli.h"
#include "infer/chat.h"
#include "core/error.h"
#include "core/fileio.h"
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 chat --model DIR [--system TEXT] [options]\n"
            "\n"
            "Reads user turns from stdin, one per line, and streams the assistant's replies. Turns are rendered\n"
            "with DeepSeek-V3's chat template (byte-exact with transformers' apply_chat_template) and the\n"
            "session's latent cache is reused from turn to turn (only the new text is evaluated).\n"
            "\n"
            "commands (a line starting with /):\n"
            "  /reset        forget the conversation (the system prompt stays)\n"
            "  /save FILE    save the latent cache, tokens and message history to FILE\n"
            "  /load FILE    restore them from FILE (a file of another model is refused)\n"
            "  /quit         leave (as does end of input)\n"
            "\n"
            "  --system TEXT a system prompt\n"
            "\n");
    infer_args_help(f);
    fprintf(f, "\nDefaults: temperature 0.3, at most 512 tokens per reply.\n");
}

typedef struct { char **role, **content; int n, cap; } history;

static void hist_add(history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 16;
        h->role = dsv3_realloc(h->role, sizeof(char *) * h->cap);
        h->content = dsv3_realloc(h->content, sizeof(char *) * h->cap);
    }
    h->role[h->n] = dsv3_strdup(role);
    h->content[h->n] = dsv3_strdup(content);
    h->n++;
}

static void hist_clear(history *h, int keep) {
    for (int i = keep; i < h->n; i++) { free(h->role[i]); free(h->content[i]); }
    if (h->n > keep) h->n = keep;
}

static char *hist_json(const history *h) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < h->n; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", h->role[i]);
        cJSON_AddStringToObject(m, "content", h->content[i]);
        cJSON_AddItemToArray(a, m);
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static int turn(infer_ctx *c, infer_args *a, history *h) {
    dsv3_chat_msg *m = dsv3_malloc(sizeof *m * (size_t)(h->n + 1));
    for (int i = 0; i < h->n; i++) m[i] = (dsv3_chat_msg){.role = h->role[i], .content = h->content[i]};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = dsv3_chat_encode(c->tok, m, h->n, 1, &ids, &n);
    free(m);
    if (rc != 0) return -1;
    if (n + 1 > (size_t)dsv3_session_ctx(c->s)) {
        free(ids);
        return dsv3_errorf("the conversation has %zu tokens, the context is %d: /reset to start over", n, dsv3_session_ctx(c->s));
    }
    infer_stream st;
    infer_stream_init(&st, c, a, stdout, -1);
    dsv3_gen_stats gs;
    rc = dsv3_generate(c->e, c->s, c->smp, ids, (int)n, &a->gen, infer_stream_token, &st, NULL, &gs);
    free(ids);
    if (rc == 0) {
        infer_stream_finish(&st);
        printf("\n");
        fflush(stdout);
        char *clean = infer_utf8_clean(st.text ? st.text : "", st.len);
        hist_add(h, "assistant", clean);
        free(clean);
        if (!a->quiet) {
            double tps = gs.generated > 1 && gs.decode_s > 0 ? (gs.generated - 1) / gs.decode_s : 0;
            fprintf(stderr, "[%d prompt tokens, %d reused; %d tokens, %.1f tok/s", gs.prompt_tokens, gs.reused_tokens, gs.generated, tps);
            if (a->gen.speculative) fprintf(stderr, "; MTP accepted %d of %d", gs.accepted, gs.drafted);
            fprintf(stderr, "]\n");
        }
    }
    infer_stream_free(&st);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    infer_args a;
    infer_args_default(&a, 0.3f);
    a.gen.max_tokens = 512;
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (cli_is_help(k)) { usage(stdout); return 0; }
        int r = infer_arg(&a, "chat", argc, argv, &i);
        if (r == 2) return 2;
        if (r == 1) continue;
        if (!strcmp(k, "--system") && i + 1 < argc) { system = argv[++i]; continue; }
        return cli_usage_error("chat", "unknown option '%s' (or it needs a value)", k);
    }
    infer_ctx c;
    int rc = infer_open(&c, &a, "chat");
    if (rc) return rc;
    if (!c.tok) {
        dsv3_errorf("chat: %s has no tokenizer.json (give --tokenizer FILE)", a.model);
        infer_close(&c);
        return cli_bad_input();
    }
    char *tc = dsv3_path_join(a.model, "tokenizer_config.json");
    if (dsv3_file_exists(tc) && dsv3_chat_template_is_deepseek_v3(tc) == 0 && !a.quiet)
        fprintf(stderr, "dsv3 chat: note: %s has no or another chat_template; using DeepSeek-V3's\n", tc);
    free(tc);
    history h = {0};
    const int keep = system ? 1 : 0;
    if (system) hist_add(&h, "system", system);
    const int tty = isatty(0);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) { fputs("> ", stdout); fflush(stdout); }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n == 0) continue;
        if (line[0] == '/') {
            char *arg = strchr(line, ' ');
            if (arg) { *arg++ = 0; while (*arg == ' ') arg++; }
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
            if (!strcmp(line, "/reset")) {
                hist_clear(&h, keep);
                dsv3_session_truncate(c.s, 0);
                fprintf(stderr, "[conversation reset]\n");
            } else if (!strcmp(line, "/save") && arg && *arg) {
                char *js = hist_json(&h);
                if (dsv3_session_save_ex(c.s, arg, js, strlen(js)) != 0) fprintf(stderr, "dsv3 chat: %s\n", dsv3_error());
                else fprintf(stderr, "[saved %d tokens and %d messages to %s]\n", dsv3_session_len(c.s), h.n, arg);
                free(js);
            } else if (!strcmp(line, "/load") && arg && *arg) {
                char *extra = NULL;
                size_t xl = 0;
                dsv3_chat_msgs *store = NULL;
                const dsv3_chat_msg *msgs = NULL;
                int nm = -1;
                if (dsv3_session_load_ex(c.s, arg, &extra, &xl) == 0) nm = dsv3_chat_parse_json(extra, xl, &store, &msgs);
                if (nm < 0) {
                    fprintf(stderr, "dsv3 chat: /load %s: %s\n", arg, dsv3_error());
                } else {
                    hist_clear(&h, 0);
                    for (int i = 0; i < nm; i++) hist_add(&h, msgs[i].role, msgs[i].content ? msgs[i].content : "");
                    fprintf(stderr, "[loaded %d tokens and %d messages from %s]\n", dsv3_session_len(c.s), nm, arg);
                }
                dsv3_chat_msgs_free(store);
                free(extra);
            } else {
                fprintf(stderr, "commands: /reset, /save FILE, /load FILE, /quit\n");
            }
            continue;
        }
        hist_add(&h, "user", line);
        if (turn(&c, &a, &h) != 0) {
            fprintf(stderr, "dsv3 chat: %s\n", dsv3_error());
            hist_clear(&h, h.n - 1); // drop the user turn that failed
        }
    }
    free(line);
    hist_clear(&h, 0);
    free(h.role);
    free(h.content);
    infer_close(&c);
    return cli_stdout_done("chat", 0);
}
