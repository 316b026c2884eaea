// Training model: fp32 master and gradient arenas laid out by the parameter table (tmodel.h).
#include "model/tmodel.h"
#include "kernels/cpu/wpack.h"
#include "core/error.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// Points every table entry of `t->view` at its slice of the master arena (F32 views).
static void bind_view(dsv3_tmodel *t, int n_mtp) {
    dsv3_model *v = &t->view;
    memset(v, 0, sizeof *v);
    v->cfg = t->cfg;
    dsv3_model_layers_alloc(v, n_mtp);
    for (int i = 0; i < t->tab.n; i++) {
        const dsv3_param *p = &t->tab.p[i];
        float *data = t->params + p->offset;
        dsv3_mat *w = dsv3_model_mat(v, p);
        if (w) {
            memset(w, 0, sizeof *w);
            w->dtype = DSV3_F32;
            w->data = data;
            w->rows = (int)p->rows;
            w->cols = (int)p->cols;
            w->block_rows = t->cfg.weight_block_rows > 0 ? t->cfg.weight_block_rows : 128;
            w->block_cols = t->cfg.weight_block_cols > 0 ? t->cfg.weight_block_cols : 128;
        } else {
            *dsv3_model_vec(v, p) = data;
        }
    }
    if (t->cfg.tie_word_embeddings) v->lm_head = v->embed;
    if (!t->cfg.use_correction_bias)
        for (int l = 0; l < v->n_layers_loaded; l++) v->layers[l].correction_bias = NULL;
}

static void alloc_arenas(dsv3_tmodel *t, const dsv3_config *c, int n_mtp) {
    memset(t, 0, sizeof *t);
    t->cfg = *c;
    t->cfg.fp8 = 0; // the masters are fp32
    dsv3_param_table_build(&t->tab, c, n_mtp);
    t->params = dsv3_calloc(t->tab.total ? t->tab.total : 1, sizeof(float));
    t->grads = dsv3_calloc(t->tab.total ? t->tab.total : 1, sizeof(float));
    bind_view(t, n_mtp);
}

int dsv3_tmodel_from_model(dsv3_tmodel *t, const dsv3_model *m) {
    const int n_mtp = m->n_layers_loaded - m->cfg.num_hidden_layers;
    alloc_arenas(t, &m->cfg, n_mtp);
    dsv3_model *src = (dsv3_model *)m; // read only: the slot functions take a non-const model
    for (int i = 0; i < t->tab.n; i++) {
        const dsv3_param *p = &t->tab.p[i];
        if (p->flags & DSV3_PF_ALIAS) continue; // one parameter: the main tensor's values
        float *dst = t->params + p->offset;
        const dsv3_mat *w = dsv3_model_mat(src, p);
        if (w) {
            #pragma omp parallel for schedule(static) if (p->rows * p->cols > 65536)
            for (int64_t r = 0; r < p->rows; r++) dsv3_mat_row_f32(w, (int)r, dst + r * p->cols);
        } else {
            const float *v = *dsv3_model_vec(src, p);
            if (v) memcpy(dst, v, sizeof(float) * (size_t)p->rows);
        }
    }
    return 0;
}

int dsv3_tmodel_load(dsv3_tmodel *t, const char *dir) {
    dsv3_model m;
    if (dsv3_model_load(&m, dir) < 0) return -1;
    int rc = dsv3_tmodel_from_model(t, &m);
    dsv3_model_free(&m);
    return rc;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int dsv3_tmodel_init_random(dsv3_tmodel *t, const dsv3_config *c, int n_mtp, float std, uint64_t seed) {
    if (n_mtp < 0 || n_mtp > c->num_nextn_predict_layers)
        return dsv3_errorf("init: %d MTP layers requested, the config has %d", n_mtp, c->num_nextn_predict_layers);
    alloc_arenas(t, c, n_mtp);
    for (int i = 0; i < t->tab.n; i++) {
        const dsv3_param *p = &t->tab.p[i];
        if (p->flags & DSV3_PF_ALIAS) continue;
        float *dst = t->params + p->offset;
        const size_t n = dsv3_param_numel(p);
        if (p->ndim == 1) {
            int gain = p->kind == DSV3_P_NORM || p->kind == DSV3_P_IN_NORM || p->kind == DSV3_P_POST_NORM ||
                       p->kind == DSV3_P_Q_A_NORM || p->kind == DSV3_P_KV_A_NORM || p->kind == DSV3_P_ENORM ||
                       p->kind == DSV3_P_HNORM || p->kind == DSV3_P_SHEAD_NORM;
            for (size_t k = 0; k < n; k++) dst[k] = gain ? 1.0f : 0.0f;
            continue;
        }
        // one stream per tensor (seed, index): the values do not depend on the thread count
        uint64_t s = seed ^ (0x51ed2701ULL * (uint64_t)(i + 1));
        for (size_t k = 0; k < n; k += 2) {
            double u1 = ((splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53, u2 = (splitmix64(&s) >> 11) * 0x1.0p-53;
            double r = sqrt(-2.0 * log(u1));
            dst[k] = (float)(std * r * cos(2 * M_PI * u2));
            if (k + 1 < n) dst[k + 1] = (float)(std * r * sin(2 * M_PI * u2));
        }
    }
    return 0;
}

void dsv3_tmodel_zero_grads(dsv3_tmodel *t) { memset(t->grads, 0, sizeof(float) * t->tab.total); }

void dsv3_tmodel_free(dsv3_tmodel *t) {
    dsv3_model_free(&t->view);
    dsv3_param_table_free(&t->tab);
    dsv3_wpack_forget(t->params); // packs of the masters a trainer made (kernels/cpu/wpack.h)
    free(t->params);
    free(t->grads);
    memset(t, 0, sizeof *t);
}
