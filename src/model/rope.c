// Rotary frequencies (default and YaRN) and the attention softmax scale, following HF
// transformers 5.x `_compute_yarn_parameters` / `yarn_apply_mscale` (spec: reference-oracle §2.5-2.6,
// deepseek-v3 §2.4-2.5). Float rounding points mirror torch's fp32 tensor arithmetic.
#include "model/config.h"
#include <math.h>

static double yarn_get_mscale(double scale, double mscale) {
    if (scale <= 1.0) return 1.0;
    return 0.1 * mscale * log(scale) + 1.0;
}

double dsv3_softmax_scale(const dsv3_config *c) {
    double scale = 1.0 / sqrt((double)dsv3_qk_head_dim(c));
    // HF: applied whenever rope_type != default and mscale_all_dim is set (non-zero).
    if (c->rope_type == DSV3_ROPE_YARN && c->mscale_all_dim != 0.0) {
        double m = yarn_get_mscale(c->rope_factor, c->mscale_all_dim);
        scale = scale * m * m;
    }
    return scale;
}

double dsv3_rope_attention_factor(const dsv3_config *c) {
    if (c->rope_type != DSV3_ROPE_YARN) return 1.0;
    // HF: an explicit attention_factor is used as given (0 here means absent: HF's "is None")
    if (c->rope_attention_factor > 0.0) return c->rope_attention_factor;
    // HF: mscale(f, mscale) / mscale(f, mscale_all_dim) when both are set (truthy), else mscale(f, 1).
    if (c->mscale != 0.0 && c->mscale_all_dim != 0.0)
        return yarn_get_mscale(c->rope_factor, c->mscale) / yarn_get_mscale(c->rope_factor, c->mscale_all_dim);
    return yarn_get_mscale(c->rope_factor, 1.0);
}

static double correction_dim(double n_rot, int dim, double base, double orig) {
    return (dim * log(orig / (n_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

void dsv3_rope_inv_freq(const dsv3_config *c, float *inv_freq) {
    int dim = c->qk_rope_head_dim, half = dim / 2;
    float base = (float)c->rope_theta;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)dim;               // arange(0, dim, 2).float() / dim
        float pos_freq = (float)pow((double)base, (double)e);  // base ** e, rounded to fp32
        float extra = 1.0f / pos_freq;
        if (c->rope_type != DSV3_ROPE_YARN) { inv_freq[i] = extra; continue; }
        float inter = 1.0f / ((float)c->rope_factor * pos_freq);
        double beta_fast = c->beta_fast != 0.0 ? c->beta_fast : 32.0;
        double beta_slow = c->beta_slow != 0.0 ? c->beta_slow : 1.0;
        double orig = c->original_max_position_embeddings;
        double low = correction_dim(beta_fast, dim, c->rope_theta, orig);
        double high = correction_dim(beta_slow, dim, c->rope_theta, orig);
        if (!c->rope_no_truncate) { low = floor(low); high = ceil(high); } // HF "truncate", default true
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;
        float ramp = ((float)i - (float)low) / (float)(high - low);
        if (ramp < 0.0f) ramp = 0.0f;
        if (ramp > 1.0f) ramp = 1.0f;
        float extra_factor = 1.0f - ramp;
        inv_freq[i] = inter * (1.0f - extra_factor) + extra * extra_factor;
    }
}
