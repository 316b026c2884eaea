// Binds the tensors of a Hugging Face DeepSeek-V3/V2 checkpoint to dsv3_model (see weights.h and
// docs/MODEL.md). Every needed tensor must exist with the exact expected shape and a supported dtype.
// FP8-ness is keyed on the dtype (F8_E4M3 needs a `<name>_scale_inv` F32 block-scale grid), never on names.
#include "model/weights.h"
#include "kernels/cpu/wpack.h"
#include "model/params.h"
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

// Routed experts stored as transformers-5 fused gate_up_proj [E, 2Im, d] / down_proj [E, d, Im].
static int bind_experts(loader *L, dsv3_layer *ly, const char *pre) {
    const dsv3_config *c = &L->m->cfg;
    const int E = c->n_routed_experts, Im = c->moe_intermediate_size, d = c->hidden_size;
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
    return dsv3_errorf("%s: tensor '%s' is missing", L->dir, name);
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

dsv3_mat *dsv3_model_mat(dsv3_model *m, const dsv3_param *p) {
    dsv3_layer *ly = p->layer >= 0 ? &m->layers[p->layer] : NULL;
    switch (p->kind) {
    case DSV3_P_EMBED: return &m->embed;
    case DSV3_P_HEAD: return &m->lm_head;
    case DSV3_P_Q_A: return &ly->q_a_proj;
    case DSV3_P_Q_B: return &ly->q_b_proj;
    case DSV3_P_Q: return &ly->q_proj;
    case DSV3_P_KV_A: return &ly->kv_a_proj;
    case DSV3_P_KV_B: return &ly->kv_b_proj;
    case DSV3_P_O: return &ly->o_proj;
    case DSV3_P_GATE: return &ly->gate_proj;
    case DSV3_P_UP: return &ly->up_proj;
    case DSV3_P_DOWN: return &ly->down_proj;
    case DSV3_P_ROUTER: return &ly->router;
    case DSV3_P_EXP_GATE: return &ly->exp_gate[p->expert];
    case DSV3_P_EXP_UP: return &ly->exp_up[p->expert];
    case DSV3_P_EXP_DOWN: return &ly->exp_down[p->expert];
    case DSV3_P_SH_GATE: return &ly->sh_gate;
    case DSV3_P_SH_UP: return &ly->sh_up;
    case DSV3_P_SH_DOWN: return &ly->sh_down;
    case DSV3_P_EH_PROJ: return &ly->eh_proj;
    case DSV3_P_MTP_HEAD: return &ly->mtp_head;
    case DSV3_P_MTP_EMBED: return &ly->mtp_embed;
    default: return NULL;
    }
}

float **dsv3_model_vec(dsv3_model *m, const dsv3_param *p) {
    dsv3_layer *ly = p->layer >= 0 ? &m->layers[p->layer] : NULL;
    switch (p->kind) {
    case DSV3_P_NORM: return &m->norm;
    case DSV3_P_IN_NORM: return &ly->input_layernorm;
    case DSV3_P_POST_NORM: return &ly->post_attention_layernorm;
    case DSV3_P_Q_A_NORM: return &ly->q_a_layernorm;
    case DSV3_P_Q_A_BIAS: return &ly->q_a_proj_bias;
    case DSV3_P_KV_A_NORM: return &ly->kv_a_layernorm;
    case DSV3_P_KV_A_BIAS: return &ly->kv_a_proj_bias;
    case DSV3_P_O_BIAS: return &ly->o_proj_bias;
    case DSV3_P_CORR_BIAS: return &ly->correction_bias;
    case DSV3_P_ENORM: return &ly->enorm;
    case DSV3_P_HNORM: return &ly->hnorm;
    case DSV3_P_SHEAD_NORM: return &ly->shared_head_norm;
    default: return NULL;
    }
}

int dsv3_model_mtp_present(const dsv3_model *m, int D) {
    int n = 0;
    for (int i = 0; i < D; i++) {
        char pre[64];
        snprintf(pre, sizeof pre, "model.layers.%d.", m->cfg.num_hidden_layers + i);
        if (!st_has_prefix(&m->st, pre)) break; // checkpoint without (these) MTP modules: main model only
        n = i + 1;
    }
    return n;
}

void dsv3_model_layers_alloc(dsv3_model *m, int n_mtp) {
    const dsv3_config *c = &m->cfg;
    const int N = c->num_hidden_layers, E = c->n_routed_experts, d = c->hidden_size;
    m->layers = own(m, dsv3_calloc((size_t)N + (c->num_nextn_predict_layers > n_mtp ? c->num_nextn_predict_layers : n_mtp),
                                   sizeof *m->layers));
    m->n_layers_loaded = N + n_mtp;
    for (int l = 0; l < m->n_layers_loaded; l++) {
        dsv3_layer *ly = &m->layers[l];
        ly->is_moe = dsv3_layer_is_moe(c, l);
        if (!ly->is_moe) continue;
        ly->exp_gate = own(m, dsv3_calloc(E, sizeof(dsv3_mat)));
        ly->exp_up = own(m, dsv3_calloc(E, sizeof(dsv3_mat)));
        ly->exp_down = own(m, dsv3_calloc(E, sizeof(dsv3_mat)));
        if (c->n_shared_experts == 0) { // no shared experts: empty (0-row) matrices
            loader L = {m, ""};
            mat_init(&L, &ly->sh_gate, DSV3_F32, NULL, 0, d);
            mat_init(&L, &ly->sh_up, DSV3_F32, NULL, 0, d);
            mat_init(&L, &ly->sh_down, DSV3_F32, NULL, d, 0);
        }
    }
}

// Binds every entry of the parameter table (params.h) in table order.
static int model_bind(dsv3_model *m, const char *dir) {
    loader L = {m, dir};
    const dsv3_config *c = &m->cfg;
    const int n_mtp = dsv3_model_mtp_present(m, c->num_nextn_predict_layers);
    dsv3_param_table t;
    dsv3_param_table_build(&t, c, n_mtp);
    dsv3_model_layers_alloc(m, n_mtp);
    int rc = 0, fused_layer = -1;
    for (int i = 0; i < t.n && rc == 0; i++) {
        const dsv3_param *p = &t.p[i];
        if (p->kind == DSV3_P_EXP_GATE && p->expert == 0) { // fused experts replace the per-expert entries
            char pre[64], name[96];
            snprintf(pre, sizeof pre, "model.layers.%d.", p->layer);
            snprintf(name, sizeof name, "%smlp.experts.gate_up_proj", pre);
            if (dsv3_st_find(&m->st, name)) {
                if ((rc = bind_experts(&L, &m->layers[p->layer], pre)) < 0) break;
                fused_layer = p->layer;
            }
        }
        if ((p->kind == DSV3_P_EXP_GATE || p->kind == DSV3_P_EXP_UP || p->kind == DSV3_P_EXP_DOWN) && p->layer == fused_layer)
            continue;
        const int required = !(p->flags & DSV3_PF_OPTIONAL);
        dsv3_mat *w = dsv3_model_mat(m, p);
        if (w) rc = bind_mat(&L, w, p->name, p->rows, p->cols, required);
        else rc = bind_vec(&L, dsv3_model_vec(m, p), p->name, p->rows, required);
    }
    dsv3_param_table_free(&t);
    if (rc < 0) return -1;
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    for (int l = c->num_hidden_layers; l < m->n_layers_loaded; l++) { // absent MTP copies: the main tensors
        dsv3_layer *ly = &m->layers[l];
        if (!ly->mtp_head.data) ly->mtp_head = m->lm_head;
        if (!ly->mtp_embed.data) ly->mtp_embed = m->embed;
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
    // The mappings are read-only: one version of their weights for the model's life, so GEMM packs
    // of them (kernels/cpu/wpack.h) are kept until dsv3_model_free.
    for (int i = 0; i < m->st.nfiles; i++)
        if (m->st.files[i].data) dsv3_wpack_region(m->st.files[i].data, m->st.files[i].size);
    return 0;
}

void dsv3_model_free(dsv3_model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->st.nfiles; i++)
        if (m->st.files[i].data) dsv3_wpack_forget(m->st.files[i].data);
    dsv3_st_close(&m->st);
    memset(m, 0, sizeof *m);
}
