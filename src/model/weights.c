// Binds the tensors of a Hugging Face DeepSeek-V3/V2 checkpoint to dsv3_model (see weights.h and
// docs/MODEL.md). Every needed tensor must exist with the exact expected shape and a supported dtype.
// FP8-ness is keyed on the dtype (F8_E4M3 needs a `<name>_scale_inv` F32 block-scale grid), never on names.
#include "model/weights.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    dsv3_model *m;
    const char *dir;
} loader;

static void *own(dsv3_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? m->cap_owned * 2 : 64;
        m->owned = dsv3_realloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
    }
    m->owned[m->n_owned++] = p;
    return p;
}

static const char *tfile(const loader *L, const dsv3_st_tensor *t) { return L->m->st.files[t->file].path; }

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++) k += snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Finds `name` with exactly the shape given; `required` 0 returns NULL silently when absent.
static const dsv3_st_tensor *find_shaped(const loader *L, const char *name, int ndim, const int64_t *shape, int required, int *err) {
    const dsv3_st_tensor *t = dsv3_st_find(&L->m->st, name);
    char want[160], got[160];
    shape_str(want, sizeof want, ndim, shape);
    if (!t) {
        if (required) { dsv3_errorf("%s: missing tensor '%s' (expected shape %s)", L->dir, name, want); *err = 1; }
        return NULL;
    }
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        dsv3_errorf("%s: tensor '%s': expected shape %s, found %s", tfile(L, t), name, want, got);
        *err = 1;
        return NULL;
    }
    return t;
}

// Copies tensor data to an owned buffer when it is not aligned for its element type (only possible for
// files whose header length is not a multiple of the element size).
static const void *aligned_data(loader *L, const dsv3_st_tensor *t) {
    size_t es = dsv3_dtype_size(t->dtype);
    if (((uintptr_t)t->data % es) == 0) return t->data;
    void *p = own(L->m, dsv3_malloc(t->nbytes ? t->nbytes : 1));
    memcpy(p, t->data, t->nbytes);
    return p;
}

// Vector (norm gain, bias): F32 / BF16 / F16 -> owned fp32.
static int bind_vec(loader *L, float **out, const char *name, int64_t n, int required) {
    int err = 0;
    *out = NULL;
    const dsv3_st_tensor *t = find_shaped(L, name, 1, &n, required, &err);
    if (!t) return err ? -1 : 0;
    if (t->dtype != DSV3_F32 && t->dtype != DSV3_BF16 && t->dtype != DSV3_F16)
        return dsv3_errorf("%s: tensor '%s': dtype %s is not supported for a vector (expected F32, BF16 or F16)", tfile(L, t),
                           name, dsv3_dtype_name(t->dtype));
    float *v = own(L->m, dsv3_malloc((size_t)(n ? n : 1) * sizeof(float)));
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == DSV3_F32) memcpy(&v[i], p + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            v[i] = t->dtype == DSV3_BF16 ? dsv3_bf16_to_f32(h) : dsv3_f16_to_f32(h);
        }
    }
    *out = v;
    return 0;
}

static int is_mat_dtype(dsv3_dtype d) { return d == DSV3_F32 || d == DSV3_BF16 || d == DSV3_F16 || d == DSV3_F8_E4M3; }

static int cdiv(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

// Loads the F32 scale grid `<name>_scale_inv` of an F8_E4M3 tensor; `lead` > 0 adds a leading
// expert dimension (fused experts).
static int bind_scale(loader *L, const dsv3_st_tensor *w, const char *name, int64_t lead, int64_t rows, int64_t cols,
                      const float **out) {
    const dsv3_config *c = &L->m->cfg;
    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    const dsv3_st_tensor *s = dsv3_st_find(&L->m->st, sname);
    if (!s)
        return dsv3_errorf("%s: tensor '%s' is F8_E4M3 but its block scale '%s' is missing", tfile(L, w), name, sname);
    int64_t shape[3];
    int nd = 0;
    if (lead > 0) shape[nd++] = lead;
    shape[nd++] = cdiv(rows, c->weight_block_rows);
    shape[nd++] = cdiv(cols, c->weight_block_cols);
    int err = 0;
    s = find_shaped(L, sname, nd, shape, 1, &err);
    if (!s) return -1;
    if (s->dtype != DSV3_F32)
        return dsv3_errorf("%s: tensor '%s': dtype %s, expected F32", tfile(L, s), sname, dsv3_dtype_name(s->dtype));
    *out = aligned_data(L, s);
    return 0;
}

static void mat_init(const loader *L, dsv3_mat *w, dsv3_dtype dt, const void *data, int rows, int cols) {
    memset(w, 0, sizeof *w);
    w->dtype = dt;
    w->data = data;
    w->rows = rows;
    w->cols = cols;
    w->block_rows = L->m->cfg.weight_block_rows;
    w->block_cols = L->m->cfg.weight_block_cols;
}

// Matrix (out = rows, in = cols) as a view into the mapping; F8_E4M3 gets its block scales.
static int bind_mat(loader *L, dsv3_mat *w, const char *name, int64_t rows, int64_t cols, int required) {
    int64_t shape[2] = {rows, cols};
    int err = 0;
    memset(w, 0, sizeof *w);
    const dsv3_st_tensor *t = find_shaped(L, name, 2, shape, required, &err);
    if (!t) return err ? -1 : 0;
    if (!is_mat_dtype(t->dtype))
        return dsv3_errorf("%s: tensor '%s': dtype %s is not supported (expected F32, BF16, F16 or F8_E4M3)", tfile(L, t), name,
                           dsv3_dtype_name(t->dtype));
    mat_init(L, w, t->dtype, aligned_data(L, t), (int)rows, (int)cols);
    if (t->dtype == DSV3_F8_E4M3 && bind_scale(L, t, name, 0, rows, cols, &w->scale) < 0) return -1;
    return 0;
}

// Routed experts: per-expert tensors, or transformers-5 fused gate_up_proj [E, 2Im, d] / down_proj [E, d, Im].
static int bind_experts(loader *L, dsv3_layer *ly, const char *pre) {
    const dsv3_config *c = &L->m->cfg;
    const int E = c->n_routed_experts, Im = c->moe_intermediate_size, d = c->hidden_size;
    ly->exp_gate = own(L->m, dsv3_calloc(E, sizeof(dsv3_mat)));
    ly->exp_up = own(L->m, dsv3_calloc(E, sizeof(dsv3_mat)));
    ly->exp_down = own(L->m, dsv3_calloc(E, sizeof(dsv3_mat)));
    char name[512];
    snprintf(name, sizeof name, "%smlp.experts.gate_up_proj", pre);
    if (dsv3_st_find(&L->m->st, name)) {
        int err = 0;
        int64_t gs[3] = {E, 2LL * Im, d};
        const dsv3_st_tensor *gu = find_shaped(L, name, 3, gs, 1, &err);
        if (!gu) return -1;
        char dname[512];
        snprintf(dname, sizeof dname, "%smlp.experts.down_proj", pre);
        int64_t ds[3] = {E, d, Im};
        const dsv3_st_tensor *dn = find_shaped(L, dname, 3, ds, 1, &err);
        if (!dn) return -1;
        const dsv3_st_tensor *ts[2] = {gu, dn};
        const char *names[2] = {name, dname};
        for (int k = 0; k < 2; k++) {
            if (!is_mat_dtype(ts[k]->dtype))
                return dsv3_errorf("%s: tensor '%s': dtype %s is not supported (expected F32, BF16, F16 or F8_E4M3)", tfile(L, ts[k]),
                                   names[k], dsv3_dtype_name(ts[k]->dtype));
        }
        const float *sgu = NULL, *sdn = NULL;
        if (gu->dtype == DSV3_F8_E4M3) {
            if (Im % c->weight_block_rows != 0)
                return dsv3_errorf("%s: tensor '%s': fused F8_E4M3 experts need moe_intermediate_size (%d) to be a multiple of "
                                   "the scale block rows (%d)", tfile(L, gu), name, Im, c->weight_block_rows);
            if (bind_scale(L, gu, name, E, 2LL * Im, d, &sgu) < 0) return -1;
        }
        if (dn->dtype == DSV3_F8_E4M3 && bind_scale(L, dn, dname, E, d, Im, &sdn) < 0) return -1;
        const unsigned char *pgu = aligned_data(L, gu), *pdn = aligned_data(L, dn);
        const size_t egu = dsv3_dtype_size(gu->dtype), edn = dsv3_dtype_size(dn->dtype);
        const size_t sgu_rows = cdiv(2LL * Im, c->weight_block_rows), sgu_cols = cdiv(d, c->weight_block_cols);
        const size_t sdn_rows = cdiv(d, c->weight_block_rows), sdn_cols = cdiv(Im, c->weight_block_cols);
        for (int e = 0; e < E; e++) {
            const unsigned char *g = pgu + (size_t)e * 2 * Im * d * egu;
            mat_init(L, &ly->exp_gate[e], gu->dtype, g, Im, d);
            mat_init(L, &ly->exp_up[e], gu->dtype, g + (size_t)Im * d * egu, Im, d);
            mat_init(L, &ly->exp_down[e], dn->dtype, pdn + (size_t)e * d * Im * edn, d, Im);
            if (sgu) {
                ly->exp_gate[e].scale = sgu + (size_t)e * sgu_rows * sgu_cols;
                ly->exp_up[e].scale = ly->exp_gate[e].scale + (size_t)(Im / c->weight_block_rows) * sgu_cols;
            }
            if (sdn) ly->exp_down[e].scale = sdn + (size_t)e * sdn_rows * sdn_cols;
        }
        return 0;
    }
    for (int e = 0; e < E; e++) {
        snprintf(name, sizeof name, "%smlp.experts.%d.gate_proj.weight", pre, e);
        if (bind_mat(L, &ly->exp_gate[e], name, Im, d, 1) < 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.up_proj.weight", pre, e);
        if (bind_mat(L, &ly->exp_up[e], name, Im, d, 1) < 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.down_proj.weight", pre, e);
        if (bind_mat(L, &ly->exp_down[e], name, d, Im, 1) < 0) return -1;
    }
    return 0;
}

// One decoder layer (attention + dense or MoE FFN) under "model.layers.{idx}.".
static int bind_layer(loader *L, dsv3_layer *ly, int idx) {
    const dsv3_config *c = &L->m->cfg;
    const int64_t d = c->hidden_size, H = c->num_attention_heads, qk = dsv3_qk_head_dim(c);
    const int64_t ql = c->q_lora_rank, kvl = c->kv_lora_rank, rope = c->qk_rope_head_dim;
    const int64_t nope = c->qk_nope_head_dim, v = c->v_head_dim;
    char pre[64], n[512];
    snprintf(pre, sizeof pre, "model.layers.%d.", idx);
#define NAME(s) (snprintf(n, sizeof n, "%s%s", pre, s), n)
    if (bind_vec(L, &ly->input_layernorm, NAME("input_layernorm.weight"), d, 1) < 0) return -1;
    if (bind_vec(L, &ly->post_attention_layernorm, NAME("post_attention_layernorm.weight"), d, 1) < 0) return -1;
    if (ql > 0) {
        if (bind_mat(L, &ly->q_a_proj, NAME("self_attn.q_a_proj.weight"), ql, d, 1) < 0) return -1;
        if (bind_vec(L, &ly->q_a_layernorm, NAME("self_attn.q_a_layernorm.weight"), ql, 1) < 0) return -1;
        if (bind_mat(L, &ly->q_b_proj, NAME("self_attn.q_b_proj.weight"), H * qk, ql, 1) < 0) return -1;
        if (c->attention_bias && bind_vec(L, &ly->q_a_proj_bias, NAME("self_attn.q_a_proj.bias"), ql, 1) < 0) return -1;
    } else {
        // q_proj never has a bias (HF: bias=False whatever attention_bias says; a stored one is ignored)
        if (bind_mat(L, &ly->q_proj, NAME("self_attn.q_proj.weight"), H * qk, d, 1) < 0) return -1;
    }
    if (bind_mat(L, &ly->kv_a_proj, NAME("self_attn.kv_a_proj_with_mqa.weight"), kvl + rope, d, 1) < 0) return -1;
    if (bind_vec(L, &ly->kv_a_layernorm, NAME("self_attn.kv_a_layernorm.weight"), kvl, 1) < 0) return -1;
    if (bind_mat(L, &ly->kv_b_proj, NAME("self_attn.kv_b_proj.weight"), H * (nope + v), kvl, 1) < 0) return -1;
    if (bind_mat(L, &ly->o_proj, NAME("self_attn.o_proj.weight"), d, H * v, 1) < 0) return -1;
    if (c->attention_bias) {
        if (bind_vec(L, &ly->kv_a_proj_bias, NAME("self_attn.kv_a_proj_with_mqa.bias"), kvl + rope, 1) < 0) return -1;
        if (bind_vec(L, &ly->o_proj_bias, NAME("self_attn.o_proj.bias"), d, 1) < 0) return -1;
    }
    ly->is_moe = dsv3_layer_is_moe(c, idx);
    if (!ly->is_moe) {
        const int64_t I = c->intermediate_size;
        if (bind_mat(L, &ly->gate_proj, NAME("mlp.gate_proj.weight"), I, d, 1) < 0) return -1;
        if (bind_mat(L, &ly->up_proj, NAME("mlp.up_proj.weight"), I, d, 1) < 0) return -1;
        if (bind_mat(L, &ly->down_proj, NAME("mlp.down_proj.weight"), d, I, 1) < 0) return -1;
        return 0;
    }
    const int64_t E = c->n_routed_experts, Ish = (int64_t)c->moe_intermediate_size * c->n_shared_experts;
    if (bind_mat(L, &ly->router, NAME("mlp.gate.weight"), E, d, 1) < 0) return -1;
    if (c->use_correction_bias && bind_vec(L, &ly->correction_bias, NAME("mlp.gate.e_score_correction_bias"), E, 1) < 0) return -1;
    if (bind_experts(L, ly, pre) < 0) return -1;
    if (Ish > 0) {
        if (bind_mat(L, &ly->sh_gate, NAME("mlp.shared_experts.gate_proj.weight"), Ish, d, 1) < 0) return -1;
        if (bind_mat(L, &ly->sh_up, NAME("mlp.shared_experts.up_proj.weight"), Ish, d, 1) < 0) return -1;
        if (bind_mat(L, &ly->sh_down, NAME("mlp.shared_experts.down_proj.weight"), d, Ish, 1) < 0) return -1;
    } else {
        mat_init(L, &ly->sh_gate, DSV3_F32, NULL, 0, (int)d);
        mat_init(L, &ly->sh_up, DSV3_F32, NULL, 0, (int)d);
        mat_init(L, &ly->sh_down, DSV3_F32, NULL, (int)d, 0);
    }
    return 0;
#undef NAME
}

// Whether any tensor name starts with `prefix` (tensors are sorted by name).
static int st_has_prefix(const dsv3_st *st, const char *prefix) {
    size_t n = strlen(prefix);
    int lo = 0, hi = st->ntensors;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(st->tensors[mid].name, prefix) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < st->ntensors && strncmp(st->tensors[lo].name, prefix, n) == 0;
}

static int bind_mtp(loader *L, dsv3_layer *ly, int idx) {
    const dsv3_config *c = &L->m->cfg;
    const int64_t d = c->hidden_size, V = c->vocab_size;
    char n[512];
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%d.%s", idx, s), n)
    if (bind_vec(L, &ly->enorm, NAME("enorm.weight"), d, 1) < 0) return -1;
    if (bind_vec(L, &ly->hnorm, NAME("hnorm.weight"), d, 1) < 0) return -1;
    if (bind_mat(L, &ly->eh_proj, NAME("eh_proj.weight"), d, 2 * d, 1) < 0) return -1;
    if (bind_vec(L, &ly->shared_head_norm, NAME("shared_head.norm.weight"), d, 1) < 0) return -1;
    if (bind_mat(L, &ly->mtp_head, NAME("shared_head.head.weight"), V, d, 0) < 0) return -1;
    if (!ly->mtp_head.data) ly->mtp_head = L->m->lm_head;
    if (bind_mat(L, &ly->mtp_embed, NAME("embed_tokens.weight"), V, d, 0) < 0) return -1;
    if (!ly->mtp_embed.data) ly->mtp_embed = L->m->embed;
#undef NAME
    return bind_layer(L, ly, idx);
}

static int model_bind(dsv3_model *m, const char *dir) {
    loader L = {m, dir};
    const dsv3_config *c = &m->cfg;
    const int64_t d = c->hidden_size, V = c->vocab_size;
    const int N = c->num_hidden_layers, D = c->num_nextn_predict_layers;
    if (bind_mat(&L, &m->embed, "model.embed_tokens.weight", V, d, 1) < 0) return -1;
    if (bind_vec(&L, &m->norm, "model.norm.weight", d, 1) < 0) return -1;
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    else if (bind_mat(&L, &m->lm_head, "lm_head.weight", V, d, 1) < 0) return -1;
    m->layers = own(m, dsv3_calloc((size_t)N + D, sizeof *m->layers));
    for (int l = 0; l < N; l++)
        if (bind_layer(&L, &m->layers[l], l) < 0) return -1;
    m->n_layers_loaded = N;
    for (int i = 0; i < D; i++) {
        char pre[64];
        snprintf(pre, sizeof pre, "model.layers.%d.", N + i);
        if (!st_has_prefix(&m->st, pre)) break; // checkpoint without (these) MTP modules: main model only
        if (bind_mtp(&L, &m->layers[N + i], N + i) < 0) return -1;
        m->n_layers_loaded = N + i + 1;
    }
    return 0;
}

int dsv3_model_load(dsv3_model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    char *cfg = dsv3_path_join(dir, "config.json");
    int rc = dsv3_config_load(&m->cfg, cfg);
    free(cfg);
    if (rc < 0) return -1;
    if (dsv3_st_open_dir(&m->st, dir) < 0) { dsv3_model_free(m); return -1; }
    if (model_bind(m, dir) < 0) { dsv3_model_free(m); return -1; }
    return 0;
}

void dsv3_model_free(dsv3_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    dsv3_st_close(&m->st);
    memset(m, 0, sizeof *m);
}
