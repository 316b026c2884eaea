// dsv3_session: one sequence's latent cache, tokens and MTP state (include/dsv3.h).
#include "infer/infer_impl.h"
#include "core/error.h"
#include "numerics/bf16.h"
#include <stdlib.h>
#include <string.h>

dsv3_session *dsv3_session_new(const dsv3_lm *lm, int ctx, dsv3_cache_dtype dt) {
    const dsv3_config *c = &lm->m.cfg;
    if (ctx < 1) { dsv3_errorf("session: context length %d must be at least 1", ctx); return NULL; }
    if (ctx > c->max_position_embeddings) {
        dsv3_errorf("session: context length %d exceeds the model's max_position_embeddings %d", ctx,
                    c->max_position_embeddings);
        return NULL;
    }
    if (dt != DSV3_CACHE_F32 && dt != DSV3_CACHE_BF16) { dsv3_errorf("session: unknown cache dtype %d", (int)dt); return NULL; }
    dsv3_session *s = dsv3_calloc(1, sizeof *s);
    s->lm = lm;
    s->ctx = ctx;
    s->dt = dt;
    s->n_layers = lm->m.n_layers_loaded;
    s->row = c->kv_lora_rank + c->qk_rope_head_dim;
    s->cache = dsv3_calloc((size_t)s->n_layers * ctx * s->row, dt == DSV3_CACHE_F32 ? 4 : 2);
    s->tokens = dsv3_calloc((size_t)ctx, sizeof(int32_t));
    s->h_last = dsv3_calloc((size_t)c->hidden_size, sizeof(float));
    s->h_last_pos = -1;
    return s;
}

void dsv3_session_free(dsv3_session *s) {
    if (!s) return;
    free(s->cache);
    free(s->tokens);
    free(s->h_last);
    free(s);
}

int dsv3_session_len(const dsv3_session *s) { return s->len; }
int dsv3_session_ctx(const dsv3_session *s) { return s->ctx; }
const int32_t *dsv3_session_tokens(const dsv3_session *s) { return s->tokens; }
int dsv3_session_mtp_len(const dsv3_session *s) { return s->mtp_len; }

void dsv3_session_truncate(dsv3_session *s, int n) {
    if (n < 0) n = 0;
    if (n >= s->len) return;
    s->len = n;
    if (s->mtp_len > n) s->mtp_len = n;
    if (s->h_last_pos >= n) s->h_last_pos = -1;
}

void dsv3_session_mtp_truncate(dsv3_session *s, int n) {
    if (n < 0) n = 0;
    if (n < s->mtp_len) s->mtp_len = n;
}

size_t dsv3_session_cache_bytes(const dsv3_session *s) {
    return (size_t)s->n_layers * s->ctx * s->row * (s->dt == DSV3_CACHE_F32 ? 4 : 2);
}

void dsv3_session_row_f32(const dsv3_session *s, int layer, int pos, float *out) {
    size_t off = ((size_t)layer * s->ctx + pos) * s->row;
    if (s->dt == DSV3_CACHE_F32) {
        memcpy(out, (const float *)s->cache + off, sizeof(float) * s->row);
    } else {
        const uint16_t *p = (const uint16_t *)s->cache + off;
        for (int j = 0; j < s->row; j++) out[j] = dsv3_bf16_to_f32(p[j]);
    }
}

void dsv3_session_row_put(dsv3_session *s, int layer, int pos, const float *in) {
    size_t off = ((size_t)layer * s->ctx + pos) * s->row;
    if (s->dt == DSV3_CACHE_F32) {
        memcpy((float *)s->cache + off, in, sizeof(float) * s->row);
    } else {
        uint16_t *p = (uint16_t *)s->cache + off;
        for (int j = 0; j < s->row; j++) p[j] = dsv3_f32_to_bf16(in[j]);
    }
}
