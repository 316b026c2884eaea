// AdamW, clipping, schedules and the bias update (optim.h).
#include "train/optim.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

double dsv3_lr_at(dsv3_schedule s, double eta, long k, long warmup, double tau, double tau_warm_end) {
    if (warmup > 0 && k <= warmup) return eta * (double)k / (double)warmup;
    switch (s) {
    case DSV3_SCHED_CONSTANT: return eta;
    case DSV3_SCHED_COSINE: {
        double p = tau_warm_end < 1.0 ? (tau - tau_warm_end) / (1.0 - tau_warm_end) : 1.0;
        p = p < 0 ? 0 : p > 1 ? 1 : p;
        return 0.1 * eta + 0.45 * eta * (1.0 + cos(M_PI * p));
    }
    default:
        if (tau < DSV3_TAU_DECAY) return eta;
        if (tau < DSV3_TAU_TAIL1) return 0.1 * eta + 0.45 * eta * (1.0 + cos(M_PI * (tau - DSV3_TAU_DECAY) / DSV3_TAU_COSINE_LEN));
        if (tau < DSV3_TAU_TAIL2) return 0.1 * eta;
        return 0.0332 * eta;
    }
}

double dsv3_mtp_weight_at(double tau) { return tau < DSV3_TAU_DECAY ? 0.3 : 0.1; }
double dsv3_bias_speed_at(double tau) { return tau < DSV3_TAU_TAIL1 ? 1e-3 : 0.0; }

void dsv3_adamw_init(dsv3_adamw *o, size_t n, int bf16_moments) {
    memset(o, 0, sizeof *o);
    o->n = n;
    if (bf16_moments) {
        o->mb = dsv3_calloc(n ? n : 1, sizeof(uint16_t));
        o->vb = dsv3_calloc(n ? n : 1, sizeof(uint16_t));
    } else {
        o->m = dsv3_calloc(n ? n : 1, sizeof(float));
        o->v = dsv3_calloc(n ? n : 1, sizeof(float));
    }
}

void dsv3_adamw_free(dsv3_adamw *o) {
    free(o->m); free(o->v); free(o->mb); free(o->vb);
    memset(o, 0, sizeof *o);
}

void dsv3_adamw_step(dsv3_adamw *o, const dsv3_adamw_cfg *c, const dsv3_param_table *tab, float *params, const float *g,
                     double lr) {
    o->step++;
    const double bc1 = 1.0 - pow(c->beta1, (double)o->step), bc2 = 1.0 - pow(c->beta2, (double)o->step);
    const float b1 = (float)c->beta1, b2 = (float)c->beta2, eps = (float)c->eps;
    const float lrf = (float)lr, ibc1 = (float)(1.0 / bc1), ibc2 = (float)(1.0 / bc2);
    for (int i = 0; i < tab->n; i++) {
        const dsv3_param *p = &tab->p[i];
        if (p->flags & (DSV3_PF_ALIAS | DSV3_PF_BUFFER)) continue;
        const size_t n = dsv3_param_numel(p), off = p->offset;
        const float wd = (p->flags & DSV3_PF_DECAY) ? (float)c->weight_decay : 0.0f;
        float *w = params + off;
        const float *gr = g + off;
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (size_t k = 0; k < n; k++) {
            float m = o->m ? o->m[off + k] : dsv3_bf16_to_f32(o->mb[off + k]);
            float v = o->v ? o->v[off + k] : dsv3_bf16_to_f32(o->vb[off + k]);
            m = b1 * m + (1.0f - b1) * gr[k];
            v = b2 * v + (1.0f - b2) * gr[k] * gr[k];
            if (o->m) { o->m[off + k] = m; o->v[off + k] = v; }
            else { o->mb[off + k] = dsv3_f32_to_bf16(m); o->vb[off + k] = dsv3_f32_to_bf16(v); }
            const float mh = m * ibc1, vh = v * ibc2;
            w[k] -= lrf * (mh / (sqrtf(vh) + eps) + wd * w[k]);
        }
    }
}

// Deterministic whatever the thread count: fixed chunks summed in double, then added in order.
double dsv3_grad_norm(const dsv3_param_table *tab, const float *g) {
    double ss = 0.0;
    enum { CH = 64 };
    for (int i = 0; i < tab->n; i++) {
        const dsv3_param *p = &tab->p[i];
        if (p->flags & (DSV3_PF_ALIAS | DSV3_PF_BUFFER)) continue;
        const size_t n = dsv3_param_numel(p), per = (n + CH - 1) / CH;
        const float *x = g + p->offset;
        double part[CH];
        #pragma omp parallel for schedule(static) if (n > 65536)
        for (int c = 0; c < CH; c++) {
            double s = 0.0;
            const size_t k1 = (c + 1) * per < n ? (c + 1) * per : n;
            for (size_t k = c * per; k < k1; k++) s += (double)x[k] * x[k];
            part[c] = s;
        }
        for (int c = 0; c < CH; c++) ss += part[c];
    }
    return sqrt(ss);
}

double dsv3_clip_grads(const dsv3_param_table *tab, float *g, double max_norm) {
    const double norm = dsv3_grad_norm(tab, g);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        const float cf = (float)coef;
        for (int i = 0; i < tab->n; i++) {
            const dsv3_param *p = &tab->p[i];
            if (p->flags & (DSV3_PF_ALIAS | DSV3_PF_BUFFER)) continue;
            float *x = g + p->offset;
            const size_t n = dsv3_param_numel(p);
            for (size_t k = 0; k < n; k++) x[k] *= cf;
        }
    }
    return norm;
}

double dsv3_maxvio(const int64_t *counts, int E) {
    double sum = 0.0, mx = 0.0;
    for (int e = 0; e < E; e++) { sum += (double)counts[e]; if (counts[e] > mx) mx = (double)counts[e]; }
    const double mean = E > 0 ? sum / E : 0.0;
    return mean > 0 ? (mx - mean) / mean : 0.0;
}

double dsv3_bias_update(float *bias, const int64_t *counts, int E, double gamma) {
    double sum = 0.0;
    for (int e = 0; e < E; e++) sum += (double)counts[e];
    const double mean = E > 0 ? sum / E : 0.0;
    if (gamma != 0.0)
        for (int e = 0; e < E; e++) {
            const double diff = mean - (double)counts[e];
            const float sgn = diff > 0 ? 1.0f : diff < 0 ? -1.0f : 0.0f;
            bias[e] += (float)gamma * sgn;
        }
    return dsv3_maxvio(counts, E);
}
