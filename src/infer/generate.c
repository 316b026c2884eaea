// Plain and MTP-speculative generation on one session (src/infer/generate.h).
#include "infer/generate.h"
#include "infer/infer_impl.h"
#include "core/error.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void dsv3_gen_opts_default(dsv3_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 128;
    o->draft = 1;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

typedef struct {
    const dsv3_gen_opts *o;
    dsv3_sampler *smp;
    dsv3_token_fn fn;
    void *ctx;
    int32_t *out;
    dsv3_gen_stats *st;
    int eos;
    int done;
} gen_state;

// Emits one chosen token; returns 1 when generation is over (this token may have been the last).
static int commit(gen_state *g, int32_t tok, const float *logits) {
    if (g->done) return 1;
    if (!g->o->ignore_eos && tok == g->eos) { g->st->stop = DSV3_STOP_EOS; return g->done = 1; }
    for (int i = 0; i < g->o->n_stop_ids; i++)
        if (tok == g->o->stop_ids[i]) { g->st->stop = DSV3_STOP_ID; return g->done = 1; }
    dsv3_sampler_accept(g->smp, tok, 1);
    if (g->out) g->out[g->st->generated] = tok;
    g->st->generated++;
    if (g->fn && g->fn(g->ctx, tok, logits)) { g->st->stop = DSV3_STOP_CALLBACK; return g->done = 1; }
    if (g->st->generated >= g->o->max_tokens) { g->st->stop = DSV3_STOP_LENGTH; return g->done = 1; }
    return 0;
}

int dsv3_generate(dsv3_engine *e, dsv3_session *s, dsv3_sampler *smp, const int32_t *prompt, int n_prompt,
                  const dsv3_gen_opts *o, dsv3_token_fn fn, void *ctx, int32_t *out_ids, dsv3_gen_stats *st) {
    const dsv3_lm *lm = e->lm;
    const int V = lm->m.cfg.vocab_size, d = lm->m.cfg.hidden_size;
    memset(st, 0, sizeof *st);
    st->prompt_tokens = n_prompt;
    if (n_prompt < 1) return dsv3_errorf("generate: the prompt is empty");
    if (n_prompt > s->ctx) return dsv3_errorf("generate: the prompt has %d tokens, more than the context length %d", n_prompt, s->ctx);
    if (o->max_tokens < 0) return dsv3_errorf("generate: max_tokens %d is negative", o->max_tokens);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return dsv3_errorf("generate: prompt token %d at position %d is outside the vocabulary [0, %d)", prompt[i], i, V);
    const int spec = o->speculative;
    if (spec && lm->n_mtp < 1) return dsv3_errorf("generate: --speculative mtp needs an MTP module, and this model has none");
    const int k = spec ? (o->draft < 1 ? 1 : o->draft) : 0;
    if (spec && k + 1 > e->o.max_rows) return dsv3_errorf("generate: %d drafts need %d rows per step, above max_rows %d", k, k + 1, e->o.max_rows);

    // prefix reuse
    int keep = 0;
    while (keep < s->len && keep < n_prompt && s->tokens[keep] == prompt[keep]) keep++;
    if (keep > n_prompt - 1) keep = n_prompt - 1;
    if (spec && keep > s->mtp_len) keep = s->mtp_len;
    dsv3_session_truncate(s, keep);
    if (spec) dsv3_session_mtp_truncate(s, keep);
    st->reused_tokens = keep;

    dsv3_sampler_reset(smp);
    for (int i = 0; i < n_prompt; i++) dsv3_sampler_accept(smp, prompt[i], 0);
    gen_state g = {.o = o, .smp = smp, .fn = fn, .ctx = ctx, .out = out_ids, .st = st, .eos = lm->eos_id};
    if (o->max_tokens == 0) { st->stop = DSV3_STOP_LENGTH; return 0; }

    const int cap = e->o.max_rows, rows = cap > k + 1 ? cap : k + 1;
    float *logits = dsv3_malloc(sizeof(float) * (size_t)(k + 1) * V);
    float *hid = spec ? dsv3_malloc(sizeof(float) * (size_t)rows * d) : NULL;
    float *gv = spec ? dsv3_malloc(sizeof(float) * (size_t)d) : NULL;
    float *gbuf = spec ? dsv3_malloc(sizeof(float) * (size_t)(k + 1) * d) : NULL;
    float *dlog = spec ? dsv3_malloc(sizeof(float) * (size_t)V) : NULL;
    int32_t *vrows = dsv3_malloc(sizeof(int32_t) * (size_t)(k + 1));
    int rc = -1;
    double t0 = now_s();

    // prefill (speculative: chunk by chunk, warming the MTP cache over every row whose next token is known)
    int32_t y;
    if (!spec) {
        dsv3_rows it = {.s = s, .ids = prompt + keep, .n = n_prompt - keep, .logits = logits};
        if (dsv3_engine_prefill(e, &it) != 0) goto out;
    } else {
        for (int i0 = keep; i0 < n_prompt; i0 += cap) {
            const int n = n_prompt - i0 < cap ? n_prompt - i0 : cap, last = i0 + n == n_prompt;
            dsv3_rows it = {.s = s, .ids = prompt + i0, .n = n, .logits = last ? logits : NULL, .hidden = hid};
            if (dsv3_engine_eval(e, &it, 1) != 0) goto out;
            const int nm = last ? n - 1 : n; // rows 0..nm-1 pair with prompt[i0 + 1 + r]
            if (nm > 0 && dsv3_engine_mtp(e, s, hid, prompt + i0 + 1, nm, NULL, NULL) != 0) goto out;
            if (last && nm > 0) memmove(hid, hid + (size_t)nm * d, sizeof(float) * d); // the last row's hidden
        }
    }
    y = dsv3_sampler_sample(smp, logits);
    st->prefill_s = now_s() - t0;
    double t1 = now_s();
    if (commit(&g, y, logits)) { rc = 0; goto out; }

    if (!spec) {
        for (;;) {
            if (s->len >= s->ctx) { st->stop = DSV3_STOP_CONTEXT; break; }
            dsv3_rows it = {.s = s, .ids = &y, .n = 1, .logits = logits};
            if (dsv3_engine_eval(e, &it, 1) != 0) goto out;
            st->target_steps++;
            y = dsv3_sampler_sample(smp, logits);
            if (commit(&g, y, logits)) break;
        }
    } else {
        // hid row 0 = final-normed hidden of the last prompt row; MTP row pairs it with y
        int32_t drafts[64];
        int nd = 0;
        if (dsv3_engine_mtp(e, s, hid, &y, 1, gv, dlog) != 0) goto out;
        drafts[nd++] = argmax(dlog, V);
        if (o->draft_hook) drafts[0] = o->draft_hook(o->draft_hook_ctx, st->generated, drafts[0]);
        for (;;) {
            const int base = s->len;
            if (base >= s->ctx) { st->stop = DSV3_STOP_CONTEXT; break; }
            // drafts beyond the first: chain the module on its own (normed) output
            int want = k < 64 ? k : 64;
            if (base + 1 + want > s->ctx) want = s->ctx - base - 1;
            while (nd < want) {
                if (s->mtp_len + 1 > s->ctx) break;
                if (dsv3_engine_mtp(e, s, gv, &drafts[nd - 1], 1, gv, dlog) != 0) goto out;
                drafts[nd] = argmax(dlog, V);
                if (o->draft_hook) drafts[nd] = o->draft_hook(o->draft_hook_ctx, st->generated + nd, drafts[nd]);
                nd++;
            }
            if (nd > want) nd = want;
            vrows[0] = y;
            memcpy(vrows + 1, drafts, sizeof(int32_t) * nd);
            dsv3_rows it = {.s = s, .ids = vrows, .n = nd + 1, .logits = logits, .all_logits = 1, .hidden = hid};
            if (dsv3_engine_eval(e, &it, 1) != 0) goto out;
            st->target_steps++;
            st->drafted += nd;
            int a = 0, stop = 0;
            int32_t next = -1;
            for (int i = 0; i < nd; i++) {
                int acc = 0;
                int32_t t = dsv3_sampler_verify(smp, logits + (size_t)i * V, drafts[i], &acc);
                if (!acc) { next = t; break; }
                a++;
                st->accepted++;
                if (commit(&g, t, logits + (size_t)i * V)) { stop = 1; break; } // d_a emitted last: not kept in the cache
            }
            if (!stop && next < 0) next = dsv3_sampler_sample(smp, logits + (size_t)nd * V); // all accepted: bonus
            // the cache keeps y and the accepted drafts; the MTP cache is rebuilt over those rows
            dsv3_session_truncate(s, base + 1 + a - stop);
            dsv3_session_mtp_truncate(s, base);
            if (stop) break;
            if (commit(&g, next, logits + (size_t)a * V)) break;
            y = next;
            memcpy(vrows, drafts, sizeof(int32_t) * a);
            vrows[a] = y;
            if (dsv3_engine_mtp(e, s, hid, vrows, a + 1, gbuf, dlog) != 0) goto out;
            memcpy(gv, gbuf + (size_t)a * d, sizeof(float) * d); // recycled when chaining (k > 1)
            nd = 0;
            drafts[nd++] = argmax(dlog, V);
            if (o->draft_hook) drafts[0] = o->draft_hook(o->draft_hook_ctx, st->generated, drafts[0]);
        }
    }
    st->decode_s = now_s() - t1;
    rc = 0;
out:
    free(logits);
    free(hid);
    free(gv);
    free(gbuf);
    free(dlog);
    free(vrows);
    return rc;
}

// Prefix reuse + prefill + the first token of one sequence (shared by the batch loop).
static int start_seq(dsv3_engine *e, dsv3_batch_seq *q, gen_state *g, float *logits, int32_t *y) {
    const dsv3_lm *lm = e->lm;
    dsv3_session *s = q->s;
    int keep = 0;
    while (keep < s->len && keep < q->n_prompt && s->tokens[keep] == q->prompt[keep]) keep++;
    if (keep > q->n_prompt - 1) keep = q->n_prompt - 1;
    dsv3_session_truncate(s, keep);
    q->st.reused_tokens = keep;
    dsv3_sampler_reset(q->smp);
    for (int i = 0; i < q->n_prompt; i++) dsv3_sampler_accept(q->smp, q->prompt[i], 0);
    double t0 = now_s();
    dsv3_rows it = {.s = s, .ids = q->prompt + keep, .n = q->n_prompt - keep, .logits = logits};
    if (dsv3_engine_prefill(e, &it) != 0) return -1;
    *y = dsv3_sampler_sample(q->smp, logits);
    q->st.prefill_s = now_s() - t0;
    (void)lm;
    return commit(g, *y, logits);
}

int dsv3_generate_batch(dsv3_engine *e, dsv3_batch_seq *seqs, int n, int max_active, const dsv3_gen_opts *o, int *steps_out) {
    const dsv3_lm *lm = e->lm;
    const int V = lm->m.cfg.vocab_size;
    if (o->speculative) return dsv3_errorf("generate: batched decoding is plain decoding (no --speculative)");
    if (o->max_tokens < 0) return dsv3_errorf("generate: max_tokens %d is negative", o->max_tokens);
    if (max_active < 1) max_active = 1;
    if (max_active > e->o.max_rows) max_active = e->o.max_rows;
    for (int i = 0; i < n; i++) {
        dsv3_batch_seq *q = &seqs[i];
        memset(&q->st, 0, sizeof q->st);
        q->st.prompt_tokens = q->n_prompt;
        if (q->n_prompt < 1) return dsv3_errorf("generate: prompt %d is empty", i);
        if (q->n_prompt > q->s->ctx)
            return dsv3_errorf("generate: prompt %d has %d tokens, more than the context length %d", i, q->n_prompt, q->s->ctx);
        for (int j = 0; j < q->n_prompt; j++)
            if (q->prompt[j] < 0 || q->prompt[j] >= V)
                return dsv3_errorf("generate: token %d at position %d of prompt %d is outside the vocabulary [0, %d)",
                                   q->prompt[j], j, i, V);
        for (int j = 0; j < i; j++)
            if (seqs[j].s == q->s) return dsv3_errorf("generate: prompts %d and %d share a session", j, i);
    }
    float *logits = dsv3_malloc(sizeof(float) * (size_t)max_active * V);
    gen_state *gs = dsv3_calloc((size_t)n, sizeof(gen_state));
    int32_t *y = dsv3_calloc((size_t)n, sizeof(int32_t));
    int *active = dsv3_malloc(sizeof(int) * (size_t)max_active);
    dsv3_rows *items = dsv3_malloc(sizeof(dsv3_rows) * (size_t)max_active);
    double *t_start = dsv3_calloc((size_t)n, sizeof(double));
    int n_active = 0, next = 0, steps = 0, rc = -1;
    for (int i = 0; i < n; i++)
        gs[i] = (gen_state){.o = o, .smp = seqs[i].smp, .out = seqs[i].out, .st = &seqs[i].st, .eos = lm->eos_id};
    for (;;) {
        // sequences join while there is room
        while (n_active < max_active && next < n) {
            const int i = next++;
            if (o->max_tokens == 0) { seqs[i].st.stop = DSV3_STOP_LENGTH; continue; }
            int done = start_seq(e, &seqs[i], &gs[i], logits, &y[i]);
            if (done < 0) goto out;
            t_start[i] = now_s();
            if (!done) active[n_active++] = i;
        }
        if (n_active == 0) break;
        // one row per active sequence; a sequence at its context end leaves
        int m = 0;
        for (int a = 0; a < n_active; a++) {
            const int i = active[a];
            if (seqs[i].s->len >= seqs[i].s->ctx) {
                seqs[i].st.stop = DSV3_STOP_CONTEXT;
                seqs[i].st.decode_s = now_s() - t_start[i];
                continue;
            }
            active[m] = i;
            items[m] = (dsv3_rows){.s = seqs[i].s, .ids = &y[i], .n = 1, .logits = logits + (size_t)m * V};
            m++;
        }
        n_active = m;
        if (n_active == 0) continue;
        if (dsv3_engine_eval(e, items, n_active) != 0) goto out;
        steps++;
        m = 0;
        for (int a = 0; a < n_active; a++) {
            const int i = active[a];
            seqs[i].st.target_steps++;
            const float *lg = logits + (size_t)a * V;
            y[i] = dsv3_sampler_sample(seqs[i].smp, lg);
            if (commit(&gs[i], y[i], lg)) seqs[i].st.decode_s = now_s() - t_start[i];
            else active[m++] = i;
        }
        n_active = m;
    }
    if (steps_out) *steps_out = steps;
    rc = 0;
out:
    free(logits);
    free(gs);
    free(y);
    free(active);
    free(items);
    free(t_start);
    return rc;
}
