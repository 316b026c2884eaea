// config.json reader for deepseek_v3 and deepseek_v2 (Hugging Face form, transformers 4.x and 5.x).
// Absent keys take the HF defaults (DeepseekV3Config / DeepseekV2Config); every value read is
// type-checked, and dsv3_config_validate rejects configurations the engine cannot run.
#include "model/config.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/text.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNSET INT_MIN // a default that must be derived (get_int never stores INT_MIN)

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

// Field readers. `where` is the path for messages ("rope_scaling." prefix for nested keys).
// A key that is absent or null keeps *out unchanged (the default) and returns 0.
static int get_int(const cJSON *o, const char *key, int *out, const char *path, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return dsv3_errorf("%s: field '%s%s': expected an integer, found %s", path, where, key, json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d <= INT_MIN || d > INT_MAX)
        return dsv3_errorf("%s: field '%s%s': expected an integer, found %g", path, where, key, d);
    *out = (int)d;
    return 0;
}

static int get_num(const cJSON *o, const char *key, double *out, const char *path, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return dsv3_errorf("%s: field '%s%s': expected a number, found %s", path, where, key, json_type_name(v));
    if (!isfinite(v->valuedouble))
        return dsv3_errorf("%s: field '%s%s': expected a finite number, found %g", path, where, key, v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *path, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) { *out = cJSON_IsTrue(v) ? 1 : 0; return 0; }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) { *out = (int)v->valuedouble; return 0; }
    return dsv3_errorf("%s: field '%s%s': expected true or false, found %s", path, where, key, json_type_name(v));
}

// Copies a string value into out[cap]; *found set to 1 when present.
static int get_str(const cJSON *o, const char *key, char *out, size_t cap, int *found, const char *path, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (found) *found = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v))
        return dsv3_errorf("%s: field '%s%s': expected a string, found %s", path, where, key, json_type_name(v));
    if (strlen(v->valuestring) >= cap)
        return dsv3_errorf("%s: field '%s%s': value '%.40s' is too long", path, where, key, v->valuestring);
    snprintf(out, cap, "%s", v->valuestring);
    if (found) *found = 1;
    return 0;
}

// bos/eos ids may be an integer, a list of integers (the first is used) or null.
static int get_token_id(const cJSON *o, const char *key, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && cJSON_IsArray(v)) {
        const cJSON *first = cJSON_GetArrayItem(v, 0);
        if (!first) return 0;
        if (!cJSON_IsNumber(first) || first->valuedouble != floor(first->valuedouble) || !isfinite(first->valuedouble) ||
            first->valuedouble < INT_MIN || first->valuedouble > INT_MAX)
            return dsv3_errorf("%s: field '%s': expected integers", path, key);
        *out = (int)first->valuedouble;
        return 0;
    }
    return get_int(o, key, out, path, "");
}

static int cmp_key(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

// Python's json keeps the last of duplicate keys and cJSON the first: refuse them rather than guess.
// Keys are sorted first (a pairwise scan takes minutes on a hostile file with 10^5 keys).
static int check_duplicate_keys(const cJSON *obj, const char *path) {
    size_t n = 0;
    for (const cJSON *a = obj->child; a; a = a->next) {
        if (cJSON_IsObject(a) && check_duplicate_keys(a, path) < 0) return -1;
        n += a->string != NULL;
    }
    if (n < 2) return 0;
    const cJSON **keys = dsv3_malloc(n * sizeof *keys);
    size_t k = 0;
    for (const cJSON *a = obj->child; a; a = a->next)
        if (a->string) keys[k++] = a;
    qsort(keys, n, sizeof *keys, cmp_key);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (strcmp(keys[i]->string, keys[i - 1]->string) == 0)
            rc = dsv3_errorf("%s: field '%s' appears more than once", path, keys[i]->string);
    free(keys);
    return rc;
}

static void set_defaults_v3(dsv3_config *c) {
    snprintf(c->model_type, sizeof c->model_type, "deepseek_v3");
    c->vocab_size = 129280; c->hidden_size = 7168; c->intermediate_size = 18432; c->moe_intermediate_size = 2048;
    c->num_hidden_layers = 61; c->num_nextn_predict_layers = 0; c->first_k_dense_replace = 3; c->moe_layer_freq = 1;
    c->num_attention_heads = 128; c->num_key_value_heads = UNSET; // UNSET: equal to num_attention_heads
    c->q_lora_rank = 1536; c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128; c->qk_rope_head_dim = 64; c->v_head_dim = 128;
    c->n_routed_experts = 256; c->n_shared_experts = 1; c->num_experts_per_tok = 8;
    c->n_group = 8; c->topk_group = 4;
    c->scoring = DSV3_SCORE_SIGMOID;
    snprintf(c->topk_method, sizeof c->topk_method, "noaux_tc");
    c->norm_topk_prob = 1; c->routed_scaling_factor = 2.5f;
    c->rms_norm_eps = 1e-6f; c->attention_bias = 0; c->tie_word_embeddings = 0;
    c->max_position_embeddings = 4096; c->bos_token_id = 0; c->eos_token_id = 1;
}

// transformers DeepseekV2Config defaults (the 16B/236B checkpoints set every architectural key).
static void set_defaults_v2(dsv3_config *c) {
    snprintf(c->model_type, sizeof c->model_type, "deepseek_v2");
    c->vocab_size = 32000; c->hidden_size = 4096; c->intermediate_size = 11008; c->moe_intermediate_size = 1407;
    c->num_hidden_layers = 32; c->num_nextn_predict_layers = 0; c->first_k_dense_replace = 0; c->moe_layer_freq = 1;
    c->num_attention_heads = 32; c->num_key_value_heads = UNSET;
    c->q_lora_rank = 1536; c->kv_lora_rank = 512;
    c->qk_nope_head_dim = 128; c->qk_rope_head_dim = 64; c->v_head_dim = 128;
    c->n_routed_experts = 64; c->n_shared_experts = 2; c->num_experts_per_tok = UNSET; // required when MoE
    c->n_group = 1; c->topk_group = 1;
    c->scoring = DSV3_SCORE_SOFTMAX;
    snprintf(c->topk_method, sizeof c->topk_method, "greedy");
    c->norm_topk_prob = 0; c->routed_scaling_factor = 1.0f;
    c->rms_norm_eps = 1e-6f; c->attention_bias = 0; c->tie_word_embeddings = 0;
    c->max_position_embeddings = 2048; c->bos_token_id = 100000; c->eos_token_id = 100001;
}

static int parse_rope(dsv3_config *c, const cJSON *root, const char *path) {
    // Top-level rope_theta (transformers 4.x); rope_parameters.rope_theta (5.x) wins when both exist.
    if (get_num(root, "rope_theta", &c->rope_theta, path, "") < 0) return -1;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const char *where = "rope_parameters.";
    if (!rp || cJSON_IsNull(rp)) { rp = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"); where = "rope_scaling."; }
    if (!rp || cJSON_IsNull(rp)) return 0;
    if (!cJSON_IsObject(rp))
        return dsv3_errorf("%s: field '%.*s': expected an object, found %s", path, (int)strlen(where) - 1, where, json_type_name(rp));
    if (get_num(rp, "rope_theta", &c->rope_theta, path, where) < 0) return -1;
    char type[32] = "";
    int found = 0;
    if (get_str(rp, "rope_type", type, sizeof type, &found, path, where) < 0) return -1;
    if (!found && get_str(rp, "type", type, sizeof type, &found, path, where) < 0) return -1;
    if (!found || strcmp(type, "default") == 0) { c->rope_type = DSV3_ROPE_DEFAULT; return 0; }
    if (strcmp(type, "yarn") != 0)
        return dsv3_errorf("%s: field '%srope_type': '%s' is not supported (expected \"default\" or \"yarn\")", path, where, type);
    c->rope_type = DSV3_ROPE_YARN;
    double factor = NAN;
    int orig = 0;
    if (get_num(rp, "factor", &factor, path, where) < 0) return -1;
    if (get_int(rp, "original_max_position_embeddings", &orig, path, where) < 0) return -1;
    if (get_num(rp, "beta_fast", &c->beta_fast, path, where) < 0) return -1;
    if (get_num(rp, "beta_slow", &c->beta_slow, path, where) < 0) return -1;
    if (get_num(rp, "mscale", &c->mscale, path, where) < 0) return -1;
    if (get_num(rp, "mscale_all_dim", &c->mscale_all_dim, path, where) < 0) return -1;
    if (get_num(rp, "attention_factor", &c->rope_attention_factor, path, where) < 0) return -1;
    const cJSON *af = cJSON_GetObjectItemCaseSensitive(rp, "attention_factor");
    if (af && !cJSON_IsNull(af) && !(c->rope_attention_factor > 0))
        return dsv3_errorf("%s: field '%sattention_factor': must be > 0, found %g", path, where, c->rope_attention_factor);
    int truncate = 1;
    if (get_bool(rp, "truncate", &truncate, path, where) < 0) return -1;
    c->rope_no_truncate = !truncate;
    // HF 5.x: original length defaults to max_position_embeddings; factor, when absent, is their ratio.
    c->original_max_position_embeddings = orig ? orig : c->max_position_embeddings;
    if (isnan(factor)) {
        if (!orig) return dsv3_errorf("%s: field '%sfactor': required for yarn", path, where);
        factor = (double)c->max_position_embeddings / orig;
    }
    c->rope_factor = factor;
    return 0;
}

static int parse_quant(dsv3_config *c, const cJSON *root, const char *path) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!q || cJSON_IsNull(q)) return 0;
    const char *where = "quantization_config.";
    if (!cJSON_IsObject(q))
        return dsv3_errorf("%s: field 'quantization_config': expected an object, found %s", path, json_type_name(q));
    char method[32] = "", fmt[32] = "", sfmt[32] = "";
    int found = 0;
    if (get_str(q, "quant_method", method, sizeof method, &found, path, where) < 0) return -1;
    if (!found || strcmp(method, "fp8") != 0)
        return dsv3_errorf("%s: field 'quantization_config.quant_method': '%s' is not supported (expected \"fp8\")", path,
                           found ? method : "(missing)");
    c->fp8 = 1;
    if (get_str(q, "fmt", fmt, sizeof fmt, &found, path, where) < 0) return -1;
    if (found && strcmp(fmt, "e4m3") != 0)
        return dsv3_errorf("%s: field 'quantization_config.fmt': '%s' is not supported (expected \"e4m3\")", path, fmt);
    if (get_str(q, "scale_fmt", sfmt, sizeof sfmt, &found, path, where) < 0) return -1;
    if (found) {
        if (strcmp(sfmt, "ue8m0") == 0) c->scale_fmt_ue8m0 = 1;
        else return dsv3_errorf("%s: field 'quantization_config.scale_fmt': '%s' is not supported (expected \"ue8m0\")", path, sfmt);
    }
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (bs && !cJSON_IsNull(bs)) {
        const cJSON *r = cJSON_GetArrayItem(bs, 0), *k = cJSON_GetArrayItem(bs, 1);
        if (!cJSON_IsArray(bs) || cJSON_GetArraySize(bs) != 2 || !cJSON_IsNumber(r) || !cJSON_IsNumber(k) ||
            r->valuedouble != floor(r->valuedouble) || k->valuedouble != floor(k->valuedouble) ||
            !(r->valuedouble >= 1 && r->valuedouble <= 1 << 20) || !(k->valuedouble >= 1 && k->valuedouble <= 1 << 20))
            return dsv3_errorf("%s: field 'quantization_config.weight_block_size': expected two positive integers [rows, cols]", path);
        c->weight_block_rows = (int)r->valuedouble;
        c->weight_block_cols = (int)k->valuedouble;
    }
    return 0;
}

int dsv3_config_parse(dsv3_config *c, const char *json_text, const char *path) {
    memset(c, 0, sizeof *c);
    // cJSON cuts strings and keys at a \u0000 escape ("model_type\u0000x" would read as model_type):
    // refuse them, as Python would see a different string.
    if (dsv3_json_has_nul_escape(json_text, strlen(json_text)))
        return dsv3_errorf("%s: a string or key contains a \\u0000 escape (NUL characters are not supported)", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 0);
    if (!root) {
        long off = end ? (long)(end - json_text) : -1;
        return dsv3_errorf("%s: malformed JSON (parse error at byte %ld)", path, off);
    }
    int rc = -1;
    if (!cJSON_IsObject(root)) { dsv3_errorf("%s: expected a JSON object at the top level, found %s", path, json_type_name(root)); goto out; }
    if (check_duplicate_keys(root, path) < 0) goto out;

    char mt[32] = "";
    int found = 0;
    if (get_str(root, "model_type", mt, sizeof mt, &found, path, "") < 0) goto out;
    if (!found) { dsv3_errorf("%s: field 'model_type': missing (expected \"deepseek_v3\" or \"deepseek_v2\")", path); goto out; }
    if (strcmp(mt, "deepseek_v3") == 0) set_defaults_v3(c);
    else if (strcmp(mt, "deepseek_v2") == 0) set_defaults_v2(c);
    else { dsv3_errorf("%s: field 'model_type': '%s' is not supported (expected \"deepseek_v3\" or \"deepseek_v2\")", path, mt); goto out; }
    c->rope_theta = 10000.0;
    c->rope_type = DSV3_ROPE_DEFAULT;
    c->rope_interleave = 1;
    c->beta_fast = 32; c->beta_slow = 1; c->mscale = 0; c->mscale_all_dim = 0;
    c->weight_block_rows = 128; c->weight_block_cols = 128;

    static const struct { const char *key; size_t off; } ints[] = {
#define F(k) {#k, offsetof(dsv3_config, k)}
        F(vocab_size), F(hidden_size), F(intermediate_size), F(moe_intermediate_size), F(num_hidden_layers),
        F(num_nextn_predict_layers), F(first_k_dense_replace), F(moe_layer_freq), F(num_attention_heads),
        F(num_key_value_heads), F(q_lora_rank), F(kv_lora_rank), F(qk_nope_head_dim), F(qk_rope_head_dim),
        F(v_head_dim), F(n_routed_experts), F(n_shared_experts), F(num_experts_per_tok), F(n_group), F(topk_group),
        F(max_position_embeddings),
#undef F
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (get_int(root, ints[i].key, (int *)((char *)c + ints[i].off), path, "") < 0) goto out;
    // transformers 5 alias (attribute_map num_mtp_layers -> num_nextn_predict_layers); the latter wins
    if (!cJSON_GetObjectItemCaseSensitive(root, "num_nextn_predict_layers") &&
        get_int(root, "num_mtp_layers", &c->num_nextn_predict_layers, path, "") < 0)
        goto out;
    // q_lora_rank null means "no q compression" (q_proj); the V3 default 1536 applies only when absent.
    const cJSON *ql = cJSON_GetObjectItemCaseSensitive(root, "q_lora_rank");
    if (ql && cJSON_IsNull(ql)) c->q_lora_rank = 0;
    // DeepseekV2Config: n_group / topk_group / n_shared_experts null mean 1 / 1 / 0.
    const cJSON *ng = cJSON_GetObjectItemCaseSensitive(root, "n_group");
    if (ng && cJSON_IsNull(ng)) c->n_group = 1;
    const cJSON *tg = cJSON_GetObjectItemCaseSensitive(root, "topk_group");
    if (tg && cJSON_IsNull(tg)) c->topk_group = 1;
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(root, "n_shared_experts");
    if (ns && cJSON_IsNull(ns)) c->n_shared_experts = 0;
    const cJSON *nr = cJSON_GetObjectItemCaseSensitive(root, "n_routed_experts");
    if (nr && cJSON_IsNull(nr)) c->n_routed_experts = 0;
    if (c->num_key_value_heads == UNSET) c->num_key_value_heads = c->num_attention_heads;
    if (get_token_id(root, "bos_token_id", &c->bos_token_id, path) < 0) goto out;
    if (get_token_id(root, "eos_token_id", &c->eos_token_id, path) < 0) goto out;

    double d;
    d = c->routed_scaling_factor;
    if (get_num(root, "routed_scaling_factor", &d, path, "") < 0) goto out;
    c->routed_scaling_factor = (float)d;
    d = c->rms_norm_eps;
    if (get_num(root, "rms_norm_eps", &d, path, "") < 0) goto out;
    c->rms_norm_eps = (float)d;
    if (get_bool(root, "norm_topk_prob", &c->norm_topk_prob, path, "") < 0) goto out;
    if (get_bool(root, "attention_bias", &c->attention_bias, path, "") < 0) goto out;
    if (get_bool(root, "tie_word_embeddings", &c->tie_word_embeddings, path, "") < 0) goto out;
    if (get_bool(root, "rope_interleave", &c->rope_interleave, path, "") < 0) goto out;
    // DeepseekV2Config.mlp_bias puts biases on the dense and shared-expert MLPs; no checkpoint has them and
    // the engine has no such biases, so refuse rather than silently drop them (DeepseekV3 has no such key).
    int mlp_bias = 0;
    if (strcmp(c->model_type, "deepseek_v2") == 0 && get_bool(root, "mlp_bias", &mlp_bias, path, "") < 0) goto out;
    if (mlp_bias) { dsv3_errorf("%s: field 'mlp_bias': true is not supported (MLP biases)", path); goto out; }

    char s[32];
    if (get_str(root, "scoring_func", s, sizeof s, &found, path, "") < 0) goto out;
    if (found) {
        if (strcmp(s, "sigmoid") == 0) c->scoring = DSV3_SCORE_SIGMOID;
        else if (strcmp(s, "softmax") == 0) c->scoring = DSV3_SCORE_SOFTMAX;
        else { dsv3_errorf("%s: field 'scoring_func': '%s' is not supported (expected \"sigmoid\" or \"softmax\")", path, s); goto out; }
    }
    if (get_str(root, "topk_method", c->topk_method, sizeof c->topk_method, &found, path, "") < 0) goto out;
    if (strcmp(c->topk_method, "noaux_tc") != 0 && strcmp(c->topk_method, "greedy") != 0 &&
        strcmp(c->topk_method, "group_limited_greedy") != 0) {
        dsv3_errorf("%s: field 'topk_method': '%s' is not supported (expected \"noaux_tc\", \"greedy\" or \"group_limited_greedy\")",
                    path, c->topk_method);
        goto out;
    }
    c->use_correction_bias = strcmp(c->topk_method, "noaux_tc") == 0;
    if (get_str(root, "hidden_act", s, sizeof s, &found, path, "") < 0) goto out;
    if (found && strcmp(s, "silu") != 0) { dsv3_errorf("%s: field 'hidden_act': '%s' is not supported (expected \"silu\")", path, s); goto out; }
    if (get_str(root, "dtype", c->dtype, sizeof c->dtype, &found, path, "") < 0) goto out;
    if (!found && get_str(root, "torch_dtype", c->dtype, sizeof c->dtype, &found, path, "") < 0) goto out;

    if (parse_rope(c, root, path) < 0) goto out;
    if (parse_quant(c, root, path) < 0) goto out;

    if (c->n_routed_experts > 0 && c->num_experts_per_tok == UNSET) {
        dsv3_errorf("%s: field 'num_experts_per_tok': missing (required when n_routed_experts > 0)", path);
        goto out;
    }
    if (c->num_experts_per_tok == UNSET) c->num_experts_per_tok = 0;
    if (strcmp(c->topk_method, "greedy") == 0 && c->n_group > 0 && c->topk_group > 0) { c->n_group = 1; c->topk_group = 1; }
    rc = dsv3_config_validate(c, path);
out:
    cJSON_Delete(root);
    return rc;
}

int dsv3_config_load(dsv3_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    size_t n = 0;
    char *text = dsv3_read_file_max(path, DSV3_READ_MAX_JSON, "a config.json", &n);
    if (!text) return -1;
    if (strlen(text) != n) { free(text); return dsv3_errorf("%s: malformed JSON (contains a NUL byte)", path); }
    int rc = dsv3_config_parse(c, text, path);
    free(text);
    return rc;
}

#define REQUIRE(cond, ...) do { if (!(cond)) return dsv3_errorf(__VA_ARGS__); } while (0)

int dsv3_config_validate(const dsv3_config *c, const char *p) {
    static const struct { const char *key; size_t off; } pos[] = {
#define F(k) {#k, offsetof(dsv3_config, k)}
        F(vocab_size), F(hidden_size), F(num_hidden_layers), F(num_attention_heads), F(kv_lora_rank),
        F(qk_nope_head_dim), F(qk_rope_head_dim), F(v_head_dim), F(max_position_embeddings),
        F(weight_block_rows), F(weight_block_cols),
#undef F
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        int v = *(const int *)((const char *)c + pos[i].off);
        REQUIRE(v > 0, "%s: field '%s': must be a positive integer, found %d", p, pos[i].key, v);
    }
    static const struct { const char *key; size_t off; } nonneg[] = {
#define F(k) {#k, offsetof(dsv3_config, k)}
        F(intermediate_size), F(moe_intermediate_size), F(num_nextn_predict_layers), F(first_k_dense_replace),
        F(q_lora_rank), F(n_routed_experts), F(n_shared_experts), F(num_experts_per_tok), F(n_group), F(topk_group),
#undef F
    };
    for (size_t i = 0; i < sizeof nonneg / sizeof nonneg[0]; i++) {
        int v = *(const int *)((const char *)c + nonneg[i].off);
        REQUIRE(v >= 0, "%s: field '%s': must be >= 0, found %d", p, nonneg[i].key, v);
    }
    // Size limits: every matrix dimension must fit the engine's int row/column counts.
    const long long H = c->num_attention_heads;
    REQUIRE(H * (c->qk_nope_head_dim + (long long)c->qk_rope_head_dim) <= INT_MAX &&
                H * (c->qk_nope_head_dim + (long long)c->v_head_dim) <= INT_MAX,
            "%s: dimensions too large (num_attention_heads x (qk_nope_head_dim + qk_rope_head_dim or v_head_dim) "
            "must stay below 2^31)", p);
    REQUIRE((long long)c->kv_lora_rank + c->qk_rope_head_dim <= INT_MAX,
            "%s: dimensions too large (kv_lora_rank + qk_rope_head_dim must stay below 2^31)", p);
    REQUIRE((long long)c->moe_intermediate_size * c->n_shared_experts <= INT_MAX,
            "%s: dimensions too large (moe_intermediate_size x n_shared_experts must stay below 2^31)", p);
    REQUIRE(2LL * c->hidden_size <= INT_MAX,
            "%s: field 'hidden_size': too large (the MTP eh_proj input is 2 x hidden_size, which must stay below 2^31; found %d)",
            p, c->hidden_size);
    REQUIRE(2LL * c->moe_intermediate_size <= INT_MAX,
            "%s: field 'moe_intermediate_size': too large (2 x moe_intermediate_size must stay below 2^31; found %d)", p,
            c->moe_intermediate_size);
    REQUIRE(c->num_hidden_layers <= 100000 && c->num_nextn_predict_layers <= 100000,
            "%s: field 'num_hidden_layers' / 'num_nextn_predict_layers': implausibly large", p);
    REQUIRE(c->num_key_value_heads == c->num_attention_heads,
            "%s: field 'num_key_value_heads': must equal num_attention_heads for MLA (expected %d, found %d)", p,
            c->num_attention_heads, c->num_key_value_heads);
    REQUIRE(c->qk_rope_head_dim % 2 == 0, "%s: field 'qk_rope_head_dim': must be even, found %d", p, c->qk_rope_head_dim);
    REQUIRE(c->moe_layer_freq == 1, "%s: field 'moe_layer_freq': only 1 is supported, found %d", p, c->moe_layer_freq);
    REQUIRE(isfinite(c->rms_norm_eps) && c->rms_norm_eps > 0, "%s: field 'rms_norm_eps': must be a positive number, found %g", p,
            (double)c->rms_norm_eps);
    REQUIRE(isfinite(c->rope_theta) && c->rope_theta > 0, "%s: field 'rope_theta': must be a positive number, found %g", p, c->rope_theta);
    int any_dense = c->n_routed_experts == 0 || c->first_k_dense_replace > 0;
    REQUIRE(!any_dense || c->intermediate_size > 0,
            "%s: field 'intermediate_size': must be positive (the model has dense layers), found %d", p, c->intermediate_size);
    if (c->n_routed_experts > 0) {
        const int E = c->n_routed_experts;
        // The router keeps per-expert flags on the stack (dsv3_route_token); real models have <= 384 experts.
        REQUIRE(E <= DSV3_MAX_ROUTED_EXPERTS, "%s: field 'n_routed_experts': at most %d supported, found %d", p,
                DSV3_MAX_ROUTED_EXPERTS, E);
        REQUIRE(c->moe_intermediate_size > 0, "%s: field 'moe_intermediate_size': must be positive, found %d", p, c->moe_intermediate_size);
        REQUIRE(isfinite(c->routed_scaling_factor) && c->routed_scaling_factor > 0,
                "%s: field 'routed_scaling_factor': must be a positive number, found %g", p, (double)c->routed_scaling_factor);
        REQUIRE(c->n_group >= 1, "%s: field 'n_group': must be >= 1, found %d", p, c->n_group);
        REQUIRE(E % c->n_group == 0, "%s: field 'n_routed_experts': %d is not divisible by n_group %d", p, E, c->n_group);
        REQUIRE(c->topk_group >= 1 && c->topk_group <= c->n_group,
                "%s: field 'topk_group': must be in [1, n_group = %d], found %d", p, c->n_group, c->topk_group);
        // noaux_tc adds e_score_correction_bias to sigmoid scores; no code defines it for softmax scores
        // (HF V2 fails on it, DeepSeek's V3 code raises), so the bias would be loaded and silently unused.
        REQUIRE(!(c->use_correction_bias && c->scoring == DSV3_SCORE_SOFTMAX),
                "%s: field 'topk_method': \"noaux_tc\" needs scoring_func \"sigmoid\" (found \"softmax\")", p);
        const int per_group = E / c->n_group;
        // Sigmoid (V3) routing scores a group by the sum of its top-2 (biased) expert scores.
        REQUIRE(!(c->scoring == DSV3_SCORE_SIGMOID || c->use_correction_bias) || per_group >= 2,
                "%s: field 'n_group': sigmoid group scoring sums the top-2 experts of each group, so each group needs "
                ">= 2 experts (n_routed_experts %d / n_group %d = %d)", p, E, c->n_group, per_group);
        REQUIRE(c->num_experts_per_tok >= 1 && (long long)c->num_experts_per_tok <= (long long)c->topk_group * per_group,
                "%s: field 'num_experts_per_tok': must be in [1, topk_group x experts per group = %d], found %d", p,
                c->topk_group * per_group, c->num_experts_per_tok);
    }
    if (c->rope_type == DSV3_ROPE_YARN) {
        REQUIRE(isfinite(c->rope_factor) && c->rope_factor > 0, "%s: field 'rope_scaling.factor': must be > 0, found %g", p, c->rope_factor);
        REQUIRE(c->original_max_position_embeddings > 0,
                "%s: field 'rope_scaling.original_max_position_embeddings': must be > 0, found %d", p, c->original_max_position_embeddings);
        REQUIRE(isfinite(c->beta_fast) && isfinite(c->beta_slow) && c->beta_fast > c->beta_slow && c->beta_slow > 0,
                "%s: field 'rope_scaling.beta_fast': must be > beta_slow > 0 (found beta_fast %g, beta_slow %g)", p, c->beta_fast, c->beta_slow);
        REQUIRE(isfinite(c->mscale) && c->mscale >= 0, "%s: field 'rope_scaling.mscale': must be >= 0, found %g", p, c->mscale);
        REQUIRE(isfinite(c->mscale_all_dim) && c->mscale_all_dim >= 0,
                "%s: field 'rope_scaling.mscale_all_dim': must be >= 0, found %g", p, c->mscale_all_dim);
        // get_num leaves 0 when absent; an explicit 0 (cos/sin all zero) is refused, so 0 means absent
        REQUIRE(isfinite(c->rope_attention_factor) && c->rope_attention_factor >= 0,
                "%s: field 'rope_scaling.attention_factor': must be > 0, found %g", p, c->rope_attention_factor);
    }
    return 0;
}
