// dsv3 info: parameter counts, KV-cache bytes and FLOPs of a model config (src/model/counts.c).
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/config.h"
#include "model/params.h"
#include "model/train.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv3 info --config PATH [--json] [--ctx N] [--train --batch B --seq T]\n"
            "\n"
            "Reads a Hugging Face config.json (deepseek_v3 or deepseek_v2; PATH may also be a model directory)\n"
            "and prints parameter counts, KV-cache bytes and forward FLOPs per token.\n"
            "\n"
            "  --config PATH  config.json, or a directory holding one\n"
            "  --json         one JSON object on stdout instead of the table\n"
            "  --ctx N        also report forward FLOPs of a token attending to N positions (default 4096)\n"
            "  --train        training memory of a micro-batch of B rows x T tokens (MTP layers included):\n"
            "                 fp32 masters, gradients and AdamW moments, the activations the backward keeps\n"
            "                 as planned by dsv3 train, their analytic minimum, and the workspace; then the\n"
            "                 same under --precision fp8 (activations with the FP8 Linears' inputs kept as\n"
            "                 E4M3 codes, the saving against bf16, bf16 moments, the per-step weight codes)\n"
            "  --batch B, --seq T  the micro-batch (defaults 1 and 4096)\n"
            "\n"
            "Counting rules (docs/MODEL.md): total = embedding + layers + final norm + head, MTP excluded;\n"
            "active = total minus the routed experts a token does not use; MTP params exclude the shared\n"
            "embedding and head; flops_per_token = 2 x active matmul params (no embedding lookup, no\n"
            "attention scores); attention adds 2 x layers x heads x (qk_head_dim + v_head_dim) per\n"
            "attended position (MLA computed without weight absorption).\n");
}

static void fmt_count(char *buf, size_t n, dsv3_count c, const char *unit) {
    const double v = (double)c;
    if (v >= 1e9) snprintf(buf, n, "%.2f B%s", v / 1e9, unit);
    else if (v >= 1e6) snprintf(buf, n, "%.2f M%s", v / 1e6, unit);
    else if (v >= 1e3) snprintf(buf, n, "%.2f K%s", v / 1e3, unit);
    else snprintf(buf, n, "%.0f %s", v, unit);
}

static void fmt_exact(char *buf, size_t n, dsv3_count v) { // 671026419200 -> 671,026,419,200
    char raw[48];
    dsv3_count_str(raw, sizeof raw, v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = 0;
}

static void row_params(const char *label, dsv3_count v) {
    char a[64], b[64];
    fmt_count(a, sizeof a, v, "");
    fmt_exact(b, sizeof b, v);
    printf("  %-30s %14s   (%s)\n", label, a, b);
}

static void row_bytes(const char *label, dsv3_count c) {
    char b[64];
    fmt_exact(b, sizeof b, c);
    char a[64];
    const double v = (double)c;
    if (v >= 1e9) snprintf(a, sizeof a, "%.2f GB", v / 1e9);
    else if (v >= 1e6) snprintf(a, sizeof a, "%.2f MB", v / 1e6);
    else snprintf(a, sizeof a, "%.2f KB", v / 1e3);
    printf("  %-30s %14s   (%s bytes)\n", label, a, b);
}

static void row_flops(const char *label, dsv3_count v) {
    char a[64];
    snprintf(a, sizeof a, "%.2f GFLOP", (double)v / 1e9);
    printf("  %-30s %14s\n", label, a);
}

int cmd_info(int argc, char **argv) {
    const char *cfg_path = NULL;
    int json = 0, train = 0, tb = 0, tt = 0;
    long ctx = 4096;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { usage(stdout); return 0; }
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--train") == 0) train = 1;
        else if ((strcmp(argv[i], "--batch") == 0 || strcmp(argv[i], "--seq") == 0) && i + 1 < argc) {
            const int is_b = argv[i][2] == 'b';
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || v < 1 || v > (1L << 24)) return cli_usage_error("info", "--%s: expected a positive integer, got '%s'", is_b ? "batch" : "seq", argv[i]);
            if (is_b) tb = (int)v; else tt = (int)v;
        }
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) cfg_path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0) cfg_path = argv[i] + 9;
        else if (strcmp(argv[i], "--ctx") == 0 && i + 1 < argc) {
            char *end = NULL;
            ctx = strtol(argv[++i], &end, 10);
            if (!*argv[i] || *end || ctx < 0 || ctx > (1L << 40)) return cli_usage_error("info", "--ctx: expected a non-negative integer, got '%s'", argv[i]);
        } else return cli_usage_error("info", "unknown or incomplete option '%s'", argv[i]);
    }
    if (!cfg_path) return cli_usage_error("info", "--config PATH is required");
    if ((tb || tt) && !train) return cli_usage_error("info", "--batch/--seq go with --train");
    if (!tb) tb = 1;
    if (!tt) tt = 4096;

    char *owned = NULL;
    struct stat st;
    if (stat(cfg_path, &st) == 0 && S_ISDIR(st.st_mode)) cfg_path = owned = dsv3_path_join(cfg_path, "config.json");
    dsv3_config c;
    if (dsv3_config_load(&c, cfg_path) < 0) { free(owned); return cli_bad_input(); }
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    const int L = c.num_hidden_layers, dense = c.n_routed_experts > 0 ? (c.first_k_dense_replace < L ? c.first_k_dense_replace : L) : L;
    const dsv3_count attn_at_ctx = k.attn_flops_per_ctx_token * (dsv3_count)ctx;
    char n1[48], n2[48], n3[48], n4[48], n5[48], n6[48]; // exact decimal counts for --json
#define N(buf, v) dsv3_count_str(buf, sizeof buf, v)
    size_t t_act = 0, t_ws = 0, t_min = 0, t_par = 0, f_act = 0, f_ws = 0, f_min = 0, f_codes = 0;
    if (train) {
        dsv3_fp8_recipe r8;
        dsv3_fp8_recipe_default(&r8);
        if (dsv3_train_plan_bytes(&c, c.num_nextn_predict_layers, tb, tt, NULL, &t_act, &t_ws, &t_min) < 0 ||
            dsv3_train_plan_bytes(&c, c.num_nextn_predict_layers, tb, tt, &r8, &f_act, &f_ws, &f_min) < 0) {
            free(owned);
            return cli_bad_input();
        }
        dsv3_param_table tab;
        dsv3_param_table_build(&tab, &c, c.num_nextn_predict_layers);
        t_par = tab.total * sizeof(float);
        for (int i = 0; i < tab.n; i++) { // the FP8 Linears' weight codes, and their transposed copy, per step
            const dsv3_param *p = &tab.p[i];
            if (p->ndim != 2 || (p->flags & DSV3_PF_ALIAS)) continue;
            f_codes += 2 * ((size_t)p->rows * p->cols + sizeof(float) * ((p->rows + 127) / 128) * ((p->cols + 127) / 128));
        }
        dsv3_param_table_free(&tab);
    }

    if (json) {
        printf("{\"config\": \"");
        for (const char *p = cfg_path; *p; p++) {
            if (*p == '"' || *p == '\\') printf("\\%c", *p);
            else if ((unsigned char)*p < 0x20) printf("\\u%04x", *p);
            else putchar(*p);
        }
        printf("\", \"model_type\": \"%s\", \"num_hidden_layers\": %d, \"dense_layers\": %d, \"moe_layers\": %d, "
               "\"mtp_layers\": %d,\n", c.model_type, L, dense, L - dense, c.num_nextn_predict_layers);
        printf(" \"total_params\": %s, \"active_params\": %s, \"mtp_params\": %s, \"mtp_active_params\": %s,\n",
               N(n1, k.total_params), N(n2, k.active_params), N(n3, k.mtp_params), N(n4, k.mtp_active_params));
        printf(" \"embed_params\": %s, \"head_params\": %s, \"attn_params_per_layer\": %s, "
               "\"dense_ffn_params_per_layer\": %s, \"expert_params\": %s, \"moe_ffn_params_per_layer\": %s,\n",
               N(n1, k.embed_params), N(n2, k.head_params), N(n3, k.attn_params_per_layer), N(n4, k.dense_ffn_params_per_layer),
               N(n5, k.expert_params), N(n6, k.moe_ffn_params_per_layer));
        printf(" \"kv_bytes_per_token\": %s, \"mha_kv_bytes_per_token\": %s,\n", N(n1, k.kv_bytes_per_token),
               N(n2, k.mha_kv_bytes_per_token));
        printf(" \"active_matmul_params\": %s, \"flops_per_token\": %s, \"attn_flops_per_ctx_token\": %s, ",
               N(n1, k.active_matmul_params), N(n2, k.flops_per_token), N(n3, k.attn_flops_per_ctx_token));
        printf("\"ctx\": %ld, \"flops_per_token_at_ctx\": %s,\n \"weight_bytes_bf16\": %s, \"kv_bytes_at_ctx\": %s", ctx,
               N(n1, k.flops_per_token + attn_at_ctx), N(n2, 2 * k.total_params), N(n3, k.kv_bytes_per_token * (dsv3_count)ctx));
        if (train)
            printf(",\n \"train_batch\": %d, \"train_seq\": %d, \"train_master_bytes\": %zu, \"train_grad_bytes\": %zu, "
                   "\"train_adam_bytes\": %zu, \"train_activation_bytes\": %zu, \"train_activation_min_bytes\": %zu, "
                   "\"train_workspace_bytes\": %zu,\n \"train_fp8_activation_bytes\": %zu, \"train_fp8_workspace_bytes\": %zu, "
                   "\"train_fp8_adam_bytes\": %zu, \"train_fp8_weight_code_bytes\": %zu, \"train_fp8_activation_saving\": %.6f",
                   tb, tt, t_par, t_par, 2 * t_par, t_act, t_min, t_ws, f_act, f_ws, t_par, f_codes,
                   t_act ? 1.0 - (double)f_act / t_act : 0.0);
        printf("}\n");
        free(owned);
        return cli_stdout_done("info", 0);
    }

    printf("%s (%s)\n", cfg_path, c.model_type);
    printf("  %-30s %d (%d dense, %d MoE) + %d MTP\n", "layers", L, dense, L - dense, c.num_nextn_predict_layers);
    printf("  %-30s d=%d, %d heads, q_lora %d, kv_lora %d, qk %d+%d, v %d\n", "shape", c.hidden_size,
           c.num_attention_heads, c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim);
    if (c.n_routed_experts > 0)
        printf("  %-30s %d routed + %d shared, top-%d, %d groups / top-%d, %s\n", "experts", c.n_routed_experts,
               c.n_shared_experts, c.num_experts_per_tok, c.n_group, c.topk_group,
               c.scoring == DSV3_SCORE_SIGMOID ? "sigmoid" : "softmax");
    printf("parameters\n");
    row_params("total (main model, no MTP)", k.total_params);
    row_params("active per token", k.active_params);
    row_params("MTP (excl. shared emb/head)", k.mtp_params);
    row_params("embedding", k.embed_params);
    row_params("head", k.head_params);
    row_params("attention per layer", k.attn_params_per_layer);
    if (dense) row_params("dense FFN per layer", k.dense_ffn_params_per_layer);
    if (c.n_routed_experts > 0) {
        row_params("one expert", k.expert_params);
        row_params("MoE FFN per layer", k.moe_ffn_params_per_layer);
    }
    char label[64];
    printf("KV cache per token (bf16)\n");
    row_bytes("MLA latent (kv_lora + rope)", k.kv_bytes_per_token);
    row_bytes("equivalent MHA (K and V)", k.mha_kv_bytes_per_token);
    printf("memory\n");
    row_bytes("weights in bf16 (no MTP)", 2 * k.total_params);
    snprintf(label, sizeof label, "MLA KV cache at ctx %ld", ctx);
    row_bytes(label, k.kv_bytes_per_token * (dsv3_count)ctx);
    printf("forward FLOPs per token\n");
    row_flops("matmuls (2 x active)", k.flops_per_token);
    snprintf(label, sizeof label, "+ attention at ctx %ld", ctx);
    row_flops(label, attn_at_ctx);
    row_flops("total at that ctx", k.flops_per_token + attn_at_ctx);
    if (train) {
        snprintf(label, sizeof label, "training, micro-batch %d x %d", tb, tt);
        printf("%s (fp32 masters; MTP layers included)\n", label);
        row_bytes("master weights (fp32)", t_par);
        row_bytes("gradients (fp32)", t_par);
        row_bytes("AdamW moments (fp32)", 2 * (dsv3_count)t_par);
        row_bytes("activations kept (planned)", t_act);
        row_bytes("  analytic minimum", t_min);
        row_bytes("workspace", t_ws);
        printf("  under --precision fp8 (bf16 activations are the fp32 tensors above; fp8 keeps the FP8\n"
               "  Linears' inputs as E4M3 codes + scales only)\n");
        snprintf(label, sizeof label, "activations kept (-%.1f %%)", t_act ? 100.0 * (1.0 - (double)f_act / t_act) : 0.0);
        row_bytes(label, f_act);
        row_bytes("workspace", f_ws);
        row_bytes("AdamW moments (bf16)", t_par);
        row_bytes("weight codes (E4M3, + transposed)", f_codes);
    }
#undef N
    free(owned);
    return cli_stdout_done("info", 0);
}
