// Token sampler: penalties, temperature, truncation filters, a counter-based RNG, the draw, the
// speculative-verification rule for greedy drafts, and logprobs (spec/inference.md §4, §1.4).
//
// Pipeline of dsv3_sampler_dist (the vLLM order, spec §4.2 / §8.6), on logits z of V ids:
//   1. penalties       repetition (CTRL): for ids seen among the last repeat_last_n recorded tokens
//                      (prompt + output), z > 0 -> z / r, z <= 0 -> z * r; then frequency/presence
//                      (OpenAI): z -= count * freq + (count > 0) * pres, counts over OUTPUT tokens only.
//   2. temperature     z / T.  T <= 0: greedy, p is one-hot at the argmax of the penalised logits
//                      (lowest id on ties) and steps 3-6 are skipped.
//   3. min-p           keep ids with p_i >= min_p * p_max (p = softmax of the tempered logits).
//   4. top-k           keep the k largest (ties: lower id first).
//   5. top-p           over the survivors, renormalised: sort by probability (ties: lower id first)
//                      and keep the shortest prefix whose mass is >= top_p (always >= 1 id). This is
//                      the same set as vLLM's "drop ids whose ascending cumulative mass <= 1 - top_p".
//   6. softmax         over the kept set in double, stored as float; zero outside it.
// Min-p and top-k both keep a prefix of the same order, so their relative order does not matter;
// top-p after them does (it renormalises over their survivors).
// Non-finite logits: NaN counts as -inf; ids at -inf get probability 0; if the largest logit is
// +inf the ids equal to it share the mass; if every logit is -inf/NaN the distribution is uniform
// (greedy: id 0).
//
// Cost: no O(V log V) sort. Top-k is an introselect (nth_element) in logit space, top-p a
// quickselect by mass (partition around a pivot, keep or discard the side by its summed mass), each
// O(V) expected, falling back to sorting a range only when partitions keep going badly. Measured
// with V = 129280, top_p = 0.95 (one core, -O2 -march=native, tests/test_sampler.c prints it):
//   dsv3_sampler_dist ~0.55 ms, dsv3_sampler_sample ~0.65 ms per call (gaussian logits, sd 3);
//   with every logit equal (top-p keeps 95% of V) ~1.3 ms.
// Nothing is allocated after dsv3_sampler_new.
//
// RNG: counter-based SplitMix64. key = mix(seed + G), uniform number c of the stream (c = 0, 1, ...
// since the last reset) = (mix(key + (c + 1) * G) >> 11) * 2^-53, with G = 0x9E3779B97F4A7C15 and
// mix the SplitMix64 finaliser. The stream depends only on (seed, c): not on threads, batch mates or
// the logits. draw() and sampling verify() consume exactly one uniform; greedy consumes none. A
// caller wanting independent streams per choice should derive a seed per choice (e.g. seed + i).
//
// History: the sampler records up to max_history tokens (prompt + output, in order). The
// repetition window is the last min(repeat_last_n, max_history) of them (repeat_last_n = -1: all
// max_history). Output counts for frequency/presence cover every output token since the reset.
// If more than max_history tokens are recorded the oldest fall out of the repetition window; the
// ring keeps DSV3_SAMPLER_ROLLBACK extra tokens so unaccept stays exact for up to that many
// tokens past the overflow (before any overflow, any number of recorded tokens can be dropped).
//
// A sampler is one sequence's state: not thread-safe, use one per sequence.
#pragma once
#include <stdint.h>

#define DSV3_SAMPLER_ROLLBACK 64

typedef struct {
    float temperature;        // <= 0: greedy (argmax of the penalised logits); finite
    int top_k;                // <= 0: off
    float top_p;              // 1.0: off; valid (0, 1]
    float min_p;              // 0: off; valid [0, 1]
    float repetition_penalty; // 1.0: off; valid > 0 (CTRL-style: z>0 -> z/r, z<=0 -> z*r), tokens seen in prompt+output within repeat_last_n
    int repeat_last_n;        // window for repetition_penalty, -1 = whole history (default -1); valid >= -1, 0 = no window
    float frequency_penalty, presence_penalty; // OpenAI: z -= count*freq + (count>0)*pres, over OUTPUT tokens only; valid [-2, 2]
    uint64_t seed;
} dsv3_sampling;

// temperature 1, top_k 0, top_p 1, min_p 0, penalties off (1 / 0 / 0), repeat_last_n -1, seed 0.
void dsv3_sampling_defaults(dsv3_sampling *s);
// 0, or -1 with dsv3_error() naming the field, its valid range and the value found (NaN rejected).
int dsv3_sampling_validate(const dsv3_sampling *s);

typedef struct dsv3_sampler dsv3_sampler; // opaque

// vocab = V; max_history = capacity of the token history (prompt + output) it tracks (>= 0).
// NULL + dsv3_error() on invalid settings or sizes.
dsv3_sampler *dsv3_sampler_new(const dsv3_sampling *s, int vocab, int max_history);
void dsv3_sampler_free(dsv3_sampler *s);
// Forget the history (and counts) and restart the RNG stream at counter 0.
void dsv3_sampler_reset(dsv3_sampler *s);
// Record a committed token: is_output = 0 for prompt tokens (only repetition_penalty sees them),
// 1 for generated ones. token must be in [0, V) (else an internal error: it is a caller bug).
void dsv3_sampler_accept(dsv3_sampler *s, int32_t token, int is_output);
// Drop the last n accepted tokens (cache rollback); restores every count exactly. n beyond what
// the history can undo (see "History" above) is an internal error.
void dsv3_sampler_unaccept(dsv3_sampler *s, int n);
// The sampler's final distribution for these logits (V floats, sums to 1, zero outside the kept
// set), by the pipeline above. Greedy: one-hot at the argmax of the penalised logits.
void dsv3_sampler_dist(dsv3_sampler *s, const float *logits, float *p);
// Categorical draw from p (V floats, non-negative, summing to ~1) by inverse CDF in id order with
// one uniform u: the first id whose cumulative mass exceeds u * sum(p).
int32_t dsv3_sampler_draw(dsv3_sampler *s, const float *p);
// Next uniform in [0, 1) from the stream (advances the counter).
double dsv3_sampler_uniform(dsv3_sampler *s);
// dist + draw (greedy: argmax, no RNG use).
int32_t dsv3_sampler_sample(dsv3_sampler *s, const float *logits);
int dsv3_sampler_is_greedy(const dsv3_sampler *s);
// Speculative verification of a greedy (argmax) draft d at one verify row (spec §1.4, "greedy
// drafts"): with p = dist(logits) and one uniform u: accept iff u < p(d), returning d; else return
// a draw from p with d's mass removed and renormalised, made from the same u rescaled to
// (u - p(d)) / (1 - p(d)) (uniform on [0,1) given the rejection), so one uniform per row. The
// returned token is distributed exactly as p. *accepted = 1/0. Greedy sampling: accepted iff
// argmax == d, returns the argmax (no RNG use). The caller then records committed tokens with
// dsv3_sampler_accept (verify itself changes no history).
int32_t dsv3_sampler_verify(dsv3_sampler *s, const float *logits, int32_t draft, int *accepted);
// log-softmax of the RAW logits (no penalties/temperature; as vLLM reports by default), in double:
// returns the logprob of `chosen`, and writes the top_n most likely ids with their logprobs
// (descending; ties by lower id) to top_ids/top_lp (top_n may be 0, then they may be NULL;
// top_n > V is clamped to V, entries past V are left alone). NaN counts as -inf.
float dsv3_logprobs(const float *logits, int V, int32_t chosen, int top_n, int32_t *top_ids, float *top_lp);
