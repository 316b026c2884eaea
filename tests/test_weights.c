// dsv3_model_load: binding HF tensor names to the model struct, for per-expert and fused (transformers 5)
// experts, BF16 and FP8 (block-scaled) weights, MTP layers, tied embeddings, sharded files, and every
// kind of bad checkpoint (missing tensor, wrong shape, unsupported dtype, FP8 without or with a
// wrong-shaped scale). Models are written here with the safetensors writer from configs/nano.json;
// every element is a deterministic function of (tensor name, index), so the test can recompute what
// each bound view must contain. Also loads the oracle fixtures in tests/fixtures/model/ when present.
#include "test.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/weights.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

// ---- deterministic values -------------------------------------------------------------------------
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}
static float val(const char *name, int64_t i) { // in [-1, 1)
    uint64_t x = name_hash(name) ^ ((uint64_t)i * 0x9E3779B97F4A7C15ULL);
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float scale_val(const char *scale_name, int64_t i) { return 0.25f + 0.5f * (val(scale_name, i) + 1.0f); }

// ---- model writer -------------------------------------------------------------------------------------
typedef struct {
    int fp8;          // projections / FFN matrices as F8_E4M3 with `_scale_inv` (block from the config)
    int fused;        // transformers-5 fused experts
    int mtp;          // write MTP layer tensors
    int mtp_copies;   // also the MTP embed_tokens / shared_head.head copies
    int tie;          // tie_word_embeddings: no lm_head.weight
    int sharded;      // two shards + model.safetensors.index.json
    const char *drop, *reshape, *bad_dtype, *drop_scale, *bad_scale; // corruptions, by tensor name
} gen_opts;

typedef struct {
    gen_opts o;
    dsv3_config c;
    dsv3_st_writer *w[2];
    void **bufs;
    int nbufs;
    int ntensors;
    char **names; // tensor names, for the index
    int *shard;
} gen;

static void *gbuf(gen *g, size_t n) {
    g->bufs = realloc(g->bufs, (size_t)(g->nbufs + 1) * sizeof *g->bufs);
    return g->bufs[g->nbufs++] = calloc(1, n ? n : 1);
}

static void gadd(gen *g, const char *name, dsv3_dtype dt, int ndim, const int64_t *shape, const void *data) {
    if (g->o.drop && strcmp(name, g->o.drop) == 0) return;
    int s = g->o.sharded ? (int)(name_hash(name) & 1) : 0;
    dsv3_st_writer_add(g->w[s], name, dt, ndim, shape, data);
    g->names = realloc(g->names, (size_t)(g->ntensors + 1) * sizeof *g->names);
    g->shard = realloc(g->shard, (size_t)(g->ntensors + 1) * sizeof *g->shard);
    g->names[g->ntensors] = dsv3_strdup(name);
    g->shard[g->ntensors++] = s;
}

static int is_fp8_candidate(const char *name) {
    return strstr(name, "self_attn.") || strstr(name, "mlp.gate_proj") || strstr(name, "mlp.up_proj") ||
           strstr(name, "mlp.down_proj") || strstr(name, "experts");
}

// Element (r, c) of the logical matrix `name`, as stored in dtype `dt`, decoded to fp32 (scale not applied).
static float stored(const char *name, int64_t idx, dsv3_dtype dt) {
    float v = val(name, idx);
    if (dt == DSV3_BF16) return dsv3_bf16_to_f32(dsv3_f32_to_bf16(v));
    if (dt == DSV3_F8_E4M3) return dsv3_e4m3_to_f32(dsv3_f32_to_e4m3(v, DSV3_FP8_SATURATE));
    return v;
}

static dsv3_dtype mat_dtype(const gen *g, const char *name) {
    return g->o.fp8 && is_fp8_candidate(name) ? DSV3_F8_E4M3 : DSV3_BF16;
}

// Fills rows x cols of matrix `name` in dtype dt at dst (element offset 0).
static void fill_mat(void *dst, const char *name, int64_t rows, int64_t cols, dsv3_dtype dt) {
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = val(name, i);
        if (dt == DSV3_F8_E4M3) ((uint8_t *)dst)[i] = dsv3_f32_to_e4m3(v, DSV3_FP8_SATURATE);
        else if (dt == DSV3_BF16) ((uint16_t *)dst)[i] = dsv3_f32_to_bf16(v);
        else if (dt == DSV3_F16) ((_Float16 *)dst)[i] = (_Float16)v;
        else ((float *)dst)[i] = v;
    }
}
static void fill_scale(float *dst, const char *sname, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = scale_val(sname, i);
}

static void emit_mat(gen *g, const char *name, int64_t rows, int64_t cols) {
    dsv3_dtype dt = mat_dtype(g, name);
    int64_t r = rows;
    if (g->o.reshape && strcmp(name, g->o.reshape) == 0) r = rows + 1;
    if (g->o.bad_dtype && strcmp(name, g->o.bad_dtype) == 0) {
        gadd(g, name, DSV3_I32, 2, (int64_t[]){r, cols}, gbuf(g, (size_t)(r * cols * 4)));
        return;
    }
    void *data = gbuf(g, (size_t)(r * cols) * dsv3_dtype_size(dt));
    fill_mat(data, name, r, cols, dt);
    gadd(g, name, dt, 2, (int64_t[]){r, cols}, data);
    if (dt != DSV3_F8_E4M3 || (g->o.drop_scale && strcmp(name, g->o.drop_scale) == 0)) return;
    char sname[600];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    int64_t sr = (r + g->c.weight_block_rows - 1) / g->c.weight_block_rows, sc = (cols + g->c.weight_block_cols - 1) / g->c.weight_block_cols;
    if (g->o.bad_scale && strcmp(name, g->o.bad_scale) == 0) sr++;
    float *s = gbuf(g, (size_t)(sr * sc) * 4);
    fill_scale(s, sname, sr * sc);
    gadd(g, sname, DSV3_F32, 2, (int64_t[]){sr, sc}, s);
}

static void emit_vec(gen *g, const char *name, int64_t n, dsv3_dtype dt) {
    if (g->o.reshape && strcmp(name, g->o.reshape) == 0) n++;
    void *data = gbuf(g, (size_t)n * dsv3_dtype_size(dt));
    fill_mat(data, name, 1, n, dt);
    gadd(g, name, dt, 1, &n, data);
}

// Fused experts built from the per-expert logical matrices (so the same checker applies).
static void emit_fused(gen *g, const char *pre) {
    const dsv3_config *c = &g->c;
    const int64_t E = c->n_routed_experts, Im = c->moe_intermediate_size, d = c->hidden_size;
    const int br = c->weight_block_rows, bc = c->weight_block_cols;
    char name[512], en[512];
    snprintf(en, sizeof en, "%smlp.experts.0.gate_proj.weight", pre);
    dsv3_dtype dt = mat_dtype(g, en);
    size_t es = dsv3_dtype_size(dt);
    uint8_t *gu = gbuf(g, (size_t)(E * 2 * Im * d) * es), *dn = gbuf(g, (size_t)(E * d * Im) * es);
    const int64_t gsr = (2 * Im + br - 1) / br, gsc = (d + bc - 1) / bc, dsr = (d + br - 1) / br, dsc = (Im + bc - 1) / bc;
    float *sgu = gbuf(g, (size_t)(E * gsr * gsc) * 4), *sdn = gbuf(g, (size_t)(E * dsr * dsc) * 4);
    for (int64_t e = 0; e < E; e++) {
        const char *kind[3] = {"gate_proj", "up_proj", "down_proj"};
        for (int k = 0; k < 3; k++) {
            snprintf(en, sizeof en, "%smlp.experts.%lld.%s.weight", pre, (long long)e, kind[k]);
            char sn[600];
            snprintf(sn, sizeof sn, "%s_scale_inv", en);
            if (k < 2) {
                fill_mat(gu + (size_t)((e * 2 + k) * Im * d) * es, en, Im, d, dt);
                fill_scale(sgu + e * gsr * gsc + k * (Im / br) * gsc, sn, (Im / br) * gsc);
            } else {
                fill_mat(dn + (size_t)(e * d * Im) * es, en, d, Im, dt);
                fill_scale(sdn + e * dsr * dsc, sn, dsr * dsc);
            }
        }
    }
    snprintf(name, sizeof name, "%smlp.experts.gate_up_proj", pre);
    gadd(g, name, dt, 3, (int64_t[]){E, 2 * Im, d}, gu);
    if (dt == DSV3_F8_E4M3) {
        snprintf(name, sizeof name, "%smlp.experts.gate_up_proj_scale_inv", pre);
        gadd(g, name, DSV3_F32, 3, (int64_t[]){E, gsr, gsc}, sgu);
    }
    snprintf(name, sizeof name, "%smlp.experts.down_proj", pre);
    gadd(g, name, dt, 3, (int64_t[]){E, d, Im}, dn);
    if (dt == DSV3_F8_E4M3) {
        snprintf(name, sizeof name, "%smlp.experts.down_proj_scale_inv", pre);
        gadd(g, name, DSV3_F32, 3, (int64_t[]){E, dsr, dsc}, sdn);
    }
}

static void emit_layer(gen *g, int l) {
    const dsv3_config *c = &g->c;
    const int64_t d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    char pre[64], n[512];
    snprintf(pre, sizeof pre, "model.layers.%d.", l);
#define N(s) (snprintf(n, sizeof n, "%s%s", pre, s), n)
    emit_vec(g, N("input_layernorm.weight"), d, DSV3_BF16);
    emit_vec(g, N("post_attention_layernorm.weight"), d, DSV3_BF16);
    emit_mat(g, N("self_attn.q_a_proj.weight"), c->q_lora_rank, d);
    emit_vec(g, N("self_attn.q_a_layernorm.weight"), c->q_lora_rank, DSV3_F16);
    emit_mat(g, N("self_attn.q_b_proj.weight"), H * qk, c->q_lora_rank);
    emit_mat(g, N("self_attn.kv_a_proj_with_mqa.weight"), c->kv_lora_rank + c->qk_rope_head_dim, d);
    emit_vec(g, N("self_attn.kv_a_layernorm.weight"), c->kv_lora_rank, DSV3_F32);
    emit_mat(g, N("self_attn.kv_b_proj.weight"), H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank);
    emit_mat(g, N("self_attn.o_proj.weight"), d, H * c->v_head_dim);
    if (!dsv3_layer_is_moe(c, l)) {
        emit_mat(g, N("mlp.gate_proj.weight"), c->intermediate_size, d);
        emit_mat(g, N("mlp.up_proj.weight"), c->intermediate_size, d);
        emit_mat(g, N("mlp.down_proj.weight"), d, c->intermediate_size);
        return;
    }
    const int64_t E = c->n_routed_experts, Im = c->moe_intermediate_size, Ish = Im * c->n_shared_experts;
    emit_mat(g, N("mlp.gate.weight"), E, d);
    emit_vec(g, N("mlp.gate.e_score_correction_bias"), E, DSV3_F32);
    if (g->o.fused) emit_fused(g, pre);
    else
        for (int e = 0; e < E; e++) {
            char en[128];
            snprintf(en, sizeof en, "mlp.experts.%d.gate_proj.weight", e);
            emit_mat(g, N(en), Im, d);
            snprintf(en, sizeof en, "mlp.experts.%d.up_proj.weight", e);
            emit_mat(g, N(en), Im, d);
            snprintf(en, sizeof en, "mlp.experts.%d.down_proj.weight", e);
            emit_mat(g, N(en), d, Im);
        }
    emit_mat(g, N("mlp.shared_experts.gate_proj.weight"), Ish, d);
    emit_mat(g, N("mlp.shared_experts.up_proj.weight"), Ish, d);
    emit_mat(g, N("mlp.shared_experts.down_proj.weight"), d, Ish);
#undef N
}

static char *tmp_path(const char *name) { return dsv3_path_join(g_dir, name); }

static void write_text(const char *name, const char *text) {
    char *p = tmp_path(name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    free(p);
}

static void clean_dir(void) {
    DIR *dd = opendir(g_dir);
    struct dirent *de;
    while (dd && (de = readdir(dd)))
        if (de->d_name[0] != '.') { char *p = tmp_path(de->d_name); unlink(p); free(p); }
    if (dd) closedir(dd);
}

// Writes config.json (configs/nano.json, edited) and the weights into g_dir. Returns the parsed config.
static dsv3_config write_model(gen_opts o) {
    clean_dir();
    char *text = dsv3_read_file("configs/nano.json", NULL);
    DSV3_ASSERT(text);
    // edits: tie, and for FP8 a quantization_config with 8x8 blocks (partial edge blocks on 20-row kv_a_proj)
    const size_t cfg_cap = strlen(text) + 256;
    char *cfg = dsv3_malloc(cfg_cap);
    char *end = strrchr(text, '}');
    *end = 0;
    snprintf(cfg, cfg_cap, "%s%s}", text,
            o.fp8 ? ", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [8, 8]}" : "");
    if (o.tie) { char *t = strstr(cfg, "\"tie_word_embeddings\": false"); DSV3_ASSERT(t); memcpy(t, "\"tie_word_embeddings\": true ", 28); }
    write_text("config.json", cfg);
    gen g;
    memset(&g, 0, sizeof g);
    g.o = o;
    DSV3_ASSERT(dsv3_config_parse(&g.c, cfg, "nano") == 0);
    free(text);
    free(cfg);
    g.w[0] = dsv3_st_writer_new();
    g.w[1] = dsv3_st_writer_new();
    const dsv3_config *c = &g.c;
    const int64_t d = c->hidden_size, V = c->vocab_size;
    emit_mat(&g, "model.embed_tokens.weight", V, d);
    emit_vec(&g, "model.norm.weight", d, DSV3_BF16);
    if (!o.tie) emit_mat(&g, "lm_head.weight", V, d);
    for (int l = 0; l < c->num_hidden_layers; l++) emit_layer(&g, l);
    if (o.mtp) {
        const int l = c->num_hidden_layers;
        char n[128];
        snprintf(n, sizeof n, "model.layers.%d.enorm.weight", l); emit_vec(&g, n, d, DSV3_BF16);
        snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", l); emit_vec(&g, n, d, DSV3_BF16);
        snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", l); emit_mat(&g, n, d, 2 * d);
        snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", l); emit_vec(&g, n, d, DSV3_BF16);
        if (o.mtp_copies) {
            snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", l); emit_mat(&g, n, V, d);
            snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", l); emit_mat(&g, n, V, d);
        }
        emit_layer(&g, l);
    }
    const char *files[2] = {o.sharded ? "model-00001-of-00002.safetensors" : "model.safetensors", "model-00002-of-00002.safetensors"};
    for (int s = 0; s < (o.sharded ? 2 : 1); s++) {
        char *p = tmp_path(files[s]);
        DSV3_ASSERT(dsv3_st_writer_save(g.w[s], p) == 0);
        free(p);
    }
    if (o.sharded) {
        size_t cap = 64 + (size_t)g.ntensors * 128;
        char *idx = dsv3_malloc(cap);
        size_t k = (size_t)snprintf(idx, cap, "{\"metadata\": {}, \"weight_map\": {");
        for (int i = 0; i < g.ntensors; i++)
            k += (size_t)snprintf(idx + k, cap - k, "%s\"%s\": \"%s\"", i ? ", " : "", g.names[i], files[g.shard[i]]);
        snprintf(idx + k, cap - k, "}}");
        write_text("model.safetensors.index.json", idx);
        free(idx);
    }
    for (int i = 0; i < g.nbufs; i++) free(g.bufs[i]);
    for (int i = 0; i < g.ntensors; i++) free(g.names[i]);
    free(g.bufs); free(g.names); free(g.shard);
    dsv3_st_writer_free(g.w[0]);
    dsv3_st_writer_free(g.w[1]);
    return g.c;
}

// ---- checks ---------------------------------------------------------------------------------------------
// Every element of the bound view must equal the value written under `name` (dequantized when FP8).
static int mat_matches(const dsv3_mat *w, const char *name, int rows, int cols, const dsv3_config *c) {
    if (!w->data || w->rows != rows || w->cols != cols) return 0;
    if (w->dtype == DSV3_F8_E4M3 && (!w->scale || w->block_rows != c->weight_block_rows || w->block_cols != c->weight_block_cols)) return 0;
    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    const int sc = (cols + c->weight_block_cols - 1) / c->weight_block_cols;
    float *row = malloc((size_t)cols * sizeof *row);
    int ok = 1;
    for (int r = 0; r < rows && ok; r++) {
        dsv3_mat_row_f32(w, r, row);
        for (int k = 0; k < cols && ok; k++) {
            float want = stored(name, (int64_t)r * cols + k, w->dtype);
            if (w->dtype == DSV3_F8_E4M3) want *= scale_val(sname, (int64_t)(r / c->weight_block_rows) * sc + k / c->weight_block_cols);
            ok = row[k] == want;
        }
    }
    free(row);
    return ok;
}

static int vec_matches(const float *v, const char *name, int n, dsv3_dtype dt) {
    if (!v) return 0;
    for (int i = 0; i < n; i++) {
        float want = dt == DSV3_F16 ? (float)(_Float16)val(name, i) : stored(name, i, dt);
        if (v[i] != want) return 0;
    }
    return 1;
}

static void check_layer(const dsv3_model *m, int l, const char *what) {
    const dsv3_config *c = &m->cfg;
    const dsv3_layer *L = &m->layers[l];
    const int d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    char n[512];
#define N(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
    CHECK(vec_matches(L->input_layernorm, N("input_layernorm.weight"), d, DSV3_BF16), "%s L%d input_layernorm", what, l);
    CHECK(vec_matches(L->post_attention_layernorm, N("post_attention_layernorm.weight"), d, DSV3_BF16), "%s L%d post norm", what, l);
    CHECK(vec_matches(L->q_a_layernorm, N("self_attn.q_a_layernorm.weight"), c->q_lora_rank, DSV3_F16), "%s L%d q_a norm (F16)", what, l);
    CHECK(vec_matches(L->kv_a_layernorm, N("self_attn.kv_a_layernorm.weight"), c->kv_lora_rank, DSV3_F32), "%s L%d kv_a norm (F32)", what, l);
    CHECK(mat_matches(&L->q_a_proj, N("self_attn.q_a_proj.weight"), c->q_lora_rank, d, c), "%s L%d q_a_proj", what, l);
    CHECK(mat_matches(&L->q_b_proj, N("self_attn.q_b_proj.weight"), H * qk, c->q_lora_rank, c), "%s L%d q_b_proj", what, l);
    CHECK(mat_matches(&L->kv_a_proj, N("self_attn.kv_a_proj_with_mqa.weight"), c->kv_lora_rank + c->qk_rope_head_dim, d, c),
          "%s L%d kv_a_proj", what, l);
    CHECK(mat_matches(&L->kv_b_proj, N("self_attn.kv_b_proj.weight"), H * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, c),
          "%s L%d kv_b_proj", what, l);
    CHECK(mat_matches(&L->o_proj, N("self_attn.o_proj.weight"), d, H * c->v_head_dim, c), "%s L%d o_proj", what, l);
    CHECK(L->q_proj.data == NULL && L->q_a_proj_bias == NULL && L->o_proj_bias == NULL, "%s L%d no q_proj / biases", what, l);
    CHECK(L->is_moe == dsv3_layer_is_moe(c, l), "%s L%d is_moe", what, l);
    if (!L->is_moe) {
        CHECK(mat_matches(&L->gate_proj, N("mlp.gate_proj.weight"), c->intermediate_size, d, c), "%s L%d gate_proj", what, l);
        CHECK(mat_matches(&L->up_proj, N("mlp.up_proj.weight"), c->intermediate_size, d, c), "%s L%d up_proj", what, l);
        CHECK(mat_matches(&L->down_proj, N("mlp.down_proj.weight"), d, c->intermediate_size, c), "%s L%d down_proj", what, l);
        CHECK(L->exp_gate == NULL && L->router.data == NULL, "%s L%d dense has no experts", what, l);
        return;
    }
    const int E = c->n_routed_experts, Im = c->moe_intermediate_size, Ish = Im * c->n_shared_experts;
    CHECK(mat_matches(&L->router, N("mlp.gate.weight"), E, d, c) && L->router.dtype == DSV3_BF16, "%s L%d router", what, l);
    CHECK(vec_matches(L->correction_bias, N("mlp.gate.e_score_correction_bias"), E, DSV3_F32), "%s L%d correction bias", what, l);
    int ok = L->exp_gate && L->exp_up && L->exp_down;
    for (int e = 0; e < E && ok; e++) {
        char en[128];
        snprintf(en, sizeof en, "mlp.experts.%d.gate_proj.weight", e);
        ok &= mat_matches(&L->exp_gate[e], N(en), Im, d, c);
        snprintf(en, sizeof en, "mlp.experts.%d.up_proj.weight", e);
        ok &= mat_matches(&L->exp_up[e], N(en), Im, d, c);
        snprintf(en, sizeof en, "mlp.experts.%d.down_proj.weight", e);
        ok &= mat_matches(&L->exp_down[e], N(en), d, Im, c);
    }
    CHECK(ok, "%s L%d experts (every element of every expert view)", what, l);
    CHECK(mat_matches(&L->sh_gate, N("mlp.shared_experts.gate_proj.weight"), Ish, d, c), "%s L%d shared gate", what, l);
    CHECK(mat_matches(&L->sh_up, N("mlp.shared_experts.up_proj.weight"), Ish, d, c), "%s L%d shared up", what, l);
    CHECK(mat_matches(&L->sh_down, N("mlp.shared_experts.down_proj.weight"), d, Ish, c), "%s L%d shared down", what, l);
#undef N
}

static void check_model(const dsv3_model *m, gen_opts o, const char *what) {
    const dsv3_config *c = &m->cfg;
    const int d = c->hidden_size, V = c->vocab_size, N = c->num_hidden_layers;
    CHECK(mat_matches(&m->embed, "model.embed_tokens.weight", V, d, c) && m->embed.dtype == DSV3_BF16, "%s embed", what);
    CHECK(vec_matches(m->norm, "model.norm.weight", d, DSV3_BF16), "%s final norm", what);
    if (o.tie) CHECK(m->lm_head.data == m->embed.data, "%s tied head", what);
    else CHECK(mat_matches(&m->lm_head, "lm_head.weight", V, d, c), "%s lm_head", what);
    for (int l = 0; l < N; l++) check_layer(m, l, what);
    CHECK(m->n_layers_loaded == N + (o.mtp ? 1 : 0), "%s n_layers_loaded %d", what, m->n_layers_loaded);
    if (o.mtp) {
        const dsv3_layer *L = &m->layers[N];
        char n[128];
        snprintf(n, sizeof n, "model.layers.%d.enorm.weight", N);
        CHECK(vec_matches(L->enorm, n, d, DSV3_BF16), "%s mtp enorm", what);
        snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", N);
        CHECK(vec_matches(L->hnorm, n, d, DSV3_BF16), "%s mtp hnorm", what);
        snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", N);
        CHECK(vec_matches(L->shared_head_norm, n, d, DSV3_BF16), "%s mtp shared_head.norm", what);
        snprintf(n, sizeof n, "model.layers.%d.eh_proj.weight", N);
        CHECK(mat_matches(&L->eh_proj, n, d, 2 * d, c) && L->eh_proj.dtype == DSV3_BF16, "%s mtp eh_proj", what);
        if (o.mtp_copies) {
            snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", N);
            CHECK(mat_matches(&L->mtp_head, n, V, d, c), "%s mtp head copy", what);
            snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", N);
            CHECK(mat_matches(&L->mtp_embed, n, V, d, c), "%s mtp embed copy", what);
        } else {
            CHECK(L->mtp_head.data == m->lm_head.data && L->mtp_embed.data == m->embed.data, "%s mtp falls back to main emb/head", what);
        }
        check_layer(m, N, what);
    }
}

static void good(gen_opts o, const char *what) {
    write_model(o);
    dsv3_model m;
    int rc = dsv3_model_load(&m, g_dir);
    CHECK(rc == 0, "%s: load: %s", what, dsv3_error());
    if (rc == 0) { check_model(&m, o, what); dsv3_model_free(&m); }
}

// The load must fail, naming the tensor (`want`) and the checkpoint (directory or file).
static void bad(gen_opts o, const char *want, const char *want2, const char *what) {
    write_model(o);
    dsv3_model m;
    dsv3_error_clear();
    int rc = dsv3_model_load(&m, g_dir);
    CHECK(rc == -1, "%s: load should fail", what);
    if (rc == 0) dsv3_model_free(&m);
    CHECK(strstr(dsv3_error(), want) != NULL, "%s: message names '%s': %s", what, want, dsv3_error());
    CHECK(!want2 || strstr(dsv3_error(), want2) != NULL, "%s: message mentions '%s': %s", what, want2, dsv3_error());
    CHECK(strstr(dsv3_error(), g_dir) != NULL, "%s: message names the checkpoint: %s", what, dsv3_error());
}

// Other writers may leave the data section unaligned (header length not a multiple of 8): insert one
// padding space into the header of a good model (data now at an odd offset) and load it again; the
// loader must copy BF16/F32 tensors to aligned memory (UBSan checks every access).
static void test_unaligned(void) {
    gen_opts o = {.mtp = 1, .fp8 = 1};
    write_model(o);
    char *p = tmp_path("model.safetensors");
    size_t n = 0;
    char *buf = dsv3_read_file(p, &n);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | (unsigned char)buf[i];
    char *out = dsv3_malloc(n + 1);
    uint64_t h2 = h + 1;
    for (int i = 0; i < 8; i++) out[i] = (char)(h2 >> (8 * i));
    memcpy(out + 8, buf + 8, h);
    out[8 + h] = ' ';
    memcpy(out + 9 + h, buf + 8 + h, n - 8 - h);
    FILE *f = fopen(p, "wb");
    fwrite(out, 1, n + 1, f);
    fclose(f);
    free(buf);
    free(out);
    free(p);
    dsv3_model m;
    int rc = dsv3_model_load(&m, g_dir);
    CHECK(rc == 0, "unaligned: load: %s", dsv3_error());
    if (rc == 0) {
        CHECK((uintptr_t)m.embed.data % 2 == 0 && (uintptr_t)m.layers[1].router.data % 2 == 0, "unaligned: bf16 views aligned");
        check_model(&m, o, "unaligned");
        dsv3_model_free(&m);
    }
}

static void test_fixtures(void) {
    // Oracle fixtures (tools/ref): each must load completely.
    DIR *dd = opendir("tests/fixtures/model");
    struct dirent *de;
    int n = 0;
    while (dd && (de = readdir(dd))) {
        if (de->d_name[0] == '.') continue;
        char path[512], cfg[600];
        snprintf(path, sizeof path, "tests/fixtures/model/%s", de->d_name);
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (!dsv3_file_exists(cfg)) continue;
        dsv3_model m;
        int rc = dsv3_model_load(&m, path);
        CHECK(rc == 0, "fixture %s: %s", path, dsv3_error());
        if (rc == 0) {
            CHECK(m.n_layers_loaded >= m.cfg.num_hidden_layers && m.embed.rows == m.cfg.vocab_size && m.norm && m.lm_head.data,
                  "fixture %s bound", path);
            dsv3_model_free(&m);
        }
        n++;
    }
    CHECK(dd != NULL, "model fixture directory tests/fixtures/model is missing");
    if (dd) closedir(dd);
    CHECK(n >= 11, "only %d oracle fixture model(s) under tests/fixtures/model (expected >= 11)", n);
    printf("loaded %d oracle fixture model(s)\n", n);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/dsv3_test_w_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }

    good((gen_opts){.mtp = 1}, "bf16 per-expert + MTP");
    good((gen_opts){.mtp = 1, .mtp_copies = 1, .fused = 1}, "fused experts + MTP copies");
    good((gen_opts){.fp8 = 1, .mtp = 1}, "fp8 per-expert");
    good((gen_opts){.fp8 = 1, .fused = 1, .tie = 1}, "fp8 fused, tied");
    good((gen_opts){0}, "config has MTP, files do not");
    good((gen_opts){.sharded = 1, .mtp = 1, .fp8 = 1}, "sharded");

    bad((gen_opts){.drop = "model.layers.1.mlp.experts.3.up_proj.weight"}, "'model.layers.1.mlp.experts.3.up_proj.weight'",
        "missing", "missing expert");
    bad((gen_opts){.drop = "lm_head.weight"}, "'lm_head.weight'", "missing", "missing head");
    bad((gen_opts){.drop = "model.layers.2.mlp.gate.e_score_correction_bias"}, "e_score_correction_bias", "missing",
        "missing correction bias");
    bad((gen_opts){.reshape = "model.layers.0.self_attn.kv_b_proj.weight"}, "'model.layers.0.self_attn.kv_b_proj.weight'",
        "expected shape [32, 16], found [33, 16]", "wrong shape");
    bad((gen_opts){.reshape = "model.norm.weight"}, "'model.norm.weight'", "expected shape [32], found [33]", "wrong vector shape");
    bad((gen_opts){.bad_dtype = "model.layers.0.self_attn.o_proj.weight"}, "'model.layers.0.self_attn.o_proj.weight'", "I32",
        "unsupported dtype");
    bad((gen_opts){.fp8 = 1, .drop_scale = "model.layers.0.self_attn.q_b_proj.weight"},
        "model.layers.0.self_attn.q_b_proj.weight_scale_inv", "missing", "fp8 without scale");
    bad((gen_opts){.fp8 = 1, .bad_scale = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight"},
        "model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv", "expected shape [3, 4], found [4, 4]", "fp8 wrong scale shape");
    bad((gen_opts){.mtp = 1, .drop = "model.layers.3.eh_proj.weight"}, "'model.layers.3.eh_proj.weight'", "missing",
        "partial MTP layer");
    bad((gen_opts){.fused = 1, .drop = "model.layers.2.mlp.experts.down_proj"}, "model.layers.2.mlp.experts.down_proj", "missing",
        "fused without down_proj");
    // bad config in a model directory
    write_model((gen_opts){0});
    write_text("config.json", "{\"model_type\": \"deepseek_v3\", \"hidden_size\": -3}");
    dsv3_model m;
    CHECK(dsv3_model_load(&m, g_dir) == -1 && strstr(dsv3_error(), "config.json") && strstr(dsv3_error(), "hidden_size"),
          "bad config: %s", dsv3_error());
    CHECK(dsv3_model_load(&m, "/nonexistent-dir") == -1, "missing dir");

    test_unaligned();
    test_fixtures();
    clean_dir();
    rmdir(g_dir);
    return test_report("test_weights");
}
