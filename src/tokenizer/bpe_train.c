// Byte-level BPE trainer (see bpe_train.h for the algorithm and docs/DATA.md for measurements).
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include "core/error.h"
#include "core/fileio.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "core/text.h"

static const char *const k_special[DSV3_BPE_NUM_SPECIAL + DSV3_BPE_NUM_ADDED] = {
    "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", // <｜begin▁of▁sentence｜>
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",   // <｜end▁of▁sentence｜>
    "<\xEF\xBD\x9C\xE2\x96\x81pad\xE2\x96\x81\xEF\xBD\x9C>",                // <｜▁pad▁｜>
    "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",                     // <｜fim▁hole｜>
    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",                 // <｜fim▁begin｜>
    "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",                   // <｜fim▁end｜>
    "<\xEF\xBD\x9CUser\xEF\xBD\x9C>",                                       // <｜User｜>
    "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>",                               // <｜Assistant｜>
};

const char *dsv3_bpe_special_token(int i) {
    return (i >= 0 && i < DSV3_BPE_NUM_SPECIAL + DSV3_BPE_NUM_ADDED) ? k_special[i] : NULL;
}

// ---------------------------------------------------------------------------------------------
// Word counts: open-addressing hash map, bytes -> count. Keys live in one arena.

typedef struct {
    uint64_t *hash;  // (cap) 0 = empty slot
    size_t *off;     // (cap) key offset in arena
    uint32_t *len;   // (cap) key length
    int64_t *count;  // (cap)
    size_t cap, n;
    char *arena;
    size_t arena_n, arena_cap;
} wmap;

// never 0: 0 marks an empty slot
static inline uint64_t hash_bytes(const char *p, size_t n) { return dsv3_hash_bytes(p, n) | 1; }

static void wmap_init(wmap *m, size_t cap) {
    memset(m, 0, sizeof *m);
    m->cap = cap;
    m->hash = dsv3_calloc(cap, sizeof *m->hash);
    m->off = dsv3_malloc(cap * sizeof *m->off);
    m->len = dsv3_malloc(cap * sizeof *m->len);
    m->count = dsv3_malloc(cap * sizeof *m->count);
}

static void wmap_free(wmap *m) {
    free(m->hash), free(m->off), free(m->len), free(m->count), free(m->arena);
    memset(m, 0, sizeof *m);
}

static void wmap_grow(wmap *m) {
    wmap g;
    wmap_init(&g, m->cap * 2);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        size_t j = m->hash[i] & (g.cap - 1);
        while (g.hash[j]) j = (j + 1) & (g.cap - 1);
        g.hash[j] = m->hash[i], g.off[j] = m->off[i], g.len[j] = m->len[i], g.count[j] = m->count[i];
    }
    g.n = m->n;
    g.arena = m->arena, g.arena_n = m->arena_n, g.arena_cap = m->arena_cap;
    free(m->hash), free(m->off), free(m->len), free(m->count);
    *m = g;
}

static void wmap_add(wmap *m, const char *w, size_t len, uint64_t h, int64_t count) {
    if (2 * (m->n + 1) > m->cap) wmap_grow(m);
    size_t j = h & (m->cap - 1);
    while (m->hash[j]) {
        if (m->hash[j] == h && m->len[j] == len && memcmp(m->arena + m->off[j], w, len) == 0) {
            m->count[j] += count;
            return;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->arena_n + len > m->arena_cap) {
        m->arena_cap = (m->arena_cap + len) * 2;
        m->arena = dsv3_realloc(m->arena, m->arena_cap);
    }
    memcpy(m->arena + m->arena_n, w, len);
    m->hash[j] = h, m->off[j] = m->arena_n, m->len[j] = (uint32_t)len, m->count[j] = count;
    m->arena_n += len;
    m->n++;
}

static void wmap_piece(const char *piece, size_t len, void *ctx) {
    if (len) wmap_add((wmap *)ctx, piece, len, hash_bytes(piece, len), 1);
}

// ---------------------------------------------------------------------------------------------

struct dsv3_bpe_trainer {
    wmap words;
    int trained;
    // tokens (ids 0..ntok-1): bytes in tok_arena
    char *tok_arena;
    size_t tok_arena_n, tok_arena_cap;
    size_t *tok_off;    // (tok_cap)
    uint32_t *tok_len;  // (tok_cap)
    int ntok, tok_cap;
    int32_t *tmap;      // (tmap_cap) open addressing: token bytes -> id, -1 empty; ids >= 3 only
    size_t tmap_cap;
    int32_t (*merges)[3]; // (nmerges) left, right, result
    int nmerges, merges_cap;
};

dsv3_bpe_trainer *dsv3_bpe_trainer_new(void) {
    dsv3_bpe_trainer *t = dsv3_calloc(1, sizeof *t);
    wmap_init(&t->words, 1 << 16);
    return t;
}

void dsv3_bpe_trainer_free(dsv3_bpe_trainer *t) {
    if (!t) return;
    wmap_free(&t->words);
    free(t->tok_arena), free(t->tok_off), free(t->tok_len), free(t->tmap), free(t->merges);
    free(t);
}

int dsv3_bpe_trainer_feed(dsv3_bpe_trainer *t, const char *text, size_t len) {
    return dsv3_pretokenize_deepseek_v3(text, len, wmap_piece, &t->words);
}

int dsv3_bpe_trainer_feed_many(dsv3_bpe_trainer *t, const char *const *texts, const size_t *lens, size_t n,
                               int threads) {
    int nt = threads > 0 ? threads : omp_get_max_threads();
    if (nt == 1) {
        for (size_t i = 0; i < n; i++)
            if (dsv3_bpe_trainer_feed(t, texts[i], lens[i])) return -1;
        return 0;
    }
    wmap *local = dsv3_calloc((size_t)nt, sizeof *local);
    int failed = 0;
    char errmsg[512] = ""; // the first failure's message (dsv3_error() is per thread)
#pragma omp parallel num_threads(nt)
    {
        wmap *m = &local[omp_get_thread_num()];
        wmap_init(m, 1 << 14);
#pragma omp for schedule(dynamic, 8)
        for (size_t i = 0; i < n; i++)
            if (dsv3_pretokenize_deepseek_v3(texts[i], lens[i], wmap_piece, m)) {
#pragma omp critical(dsv3_bpe_feed_err)
                {
                    if (!failed) snprintf(errmsg, sizeof errmsg, "document %zu: %s", i, dsv3_error());
                    failed = 1;
                }
            }
    }
    for (int k = 0; k < nt; k++) {
        wmap *m = &local[k];
        for (size_t i = 0; i < m->cap; i++)
            if (m->hash[i]) wmap_add(&t->words, m->arena + m->off[i], m->len[i], m->hash[i], m->count[i]);
        wmap_free(m);
    }
    free(local);
    return failed ? dsv3_errorf("bpe train: pre-tokenization failed: %s", errmsg) : 0;
}

void dsv3_bpe_trainer_add_word(dsv3_bpe_trainer *t, const char *word, size_t len, int64_t count) {
    if (len) wmap_add(&t->words, word, len, hash_bytes(word, len), count);
}

size_t dsv3_bpe_trainer_num_words(const dsv3_bpe_trainer *t) { return t->words.n; }

// ---------------------------------------------------------------------------------------------
// Tokens

static int tok_add(dsv3_bpe_trainer *t, const char *b, size_t n) {
    if (t->ntok == t->tok_cap) {
        t->tok_cap = t->tok_cap ? 2 * t->tok_cap : 1024;
        t->tok_off = dsv3_realloc(t->tok_off, (size_t)t->tok_cap * sizeof *t->tok_off);
        t->tok_len = dsv3_realloc(t->tok_len, (size_t)t->tok_cap * sizeof *t->tok_len);
    }
    if (t->tok_arena_n + n > t->tok_arena_cap) {
        t->tok_arena_cap = (t->tok_arena_cap + n) * 2;
        t->tok_arena = dsv3_realloc(t->tok_arena, t->tok_arena_cap);
    }
    memcpy(t->tok_arena + t->tok_arena_n, b, n);
    t->tok_off[t->ntok] = t->tok_arena_n;
    t->tok_len[t->ntok] = (uint32_t)n;
    t->tok_arena_n += n;
    return t->ntok++;
}

static const char *tok_bytes(const dsv3_bpe_trainer *t, int id) { return t->tok_arena + t->tok_off[id]; }

// Find token bytes in the token map; insert `id_if_absent` when >= 0. Returns the id or -1.
static int32_t tmap_find(dsv3_bpe_trainer *t, const char *b, size_t n, int32_t id_if_absent) {
    size_t j = hash_bytes(b, n) & (t->tmap_cap - 1);
    while (t->tmap[j] >= 0) {
        int32_t id = t->tmap[j];
        if (t->tok_len[id] == n && memcmp(tok_bytes(t, id), b, n) == 0) return id;
        j = (j + 1) & (t->tmap_cap - 1);
    }
    if (id_if_absent >= 0) t->tmap[j] = id_if_absent;
    return id_if_absent;
}

// ---------------------------------------------------------------------------------------------
// Training state

typedef struct { uint64_t key; int64_t count; int32_t wtu; } pentry; // pair map slot; key 0 = empty
typedef struct { int64_t count; int32_t a, b, pos; } hentry;          // heap entry (pos: word list id)
typedef struct { int32_t *v; int32_t n, cap; } plist;                 // word indices

typedef struct {
    int32_t *sym;      // (total symbols) word symbols, words only shrink in place
    size_t *woff;      // (nwords)
    int32_t *wlen;     // (nwords)
    int64_t *wcount;   // (nwords)
    size_t nwords;
    pentry *pm;        // (pm_cap)
    size_t pm_cap, pm_n;
    hentry *heap;
    size_t heap_n, heap_cap;
    plist *pl;
    int32_t *pl_free;
    int32_t pl_n, pl_cap, pl_nfree;
    uint64_t *touched; // pair keys whose wtu list is open this step
    size_t touched_n, touched_cap;
} tstate;

static uint64_t pkey(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static pentry *pm_get(tstate *s, uint64_t key, int insert) {
    if (insert && 2 * (s->pm_n + 1) > s->pm_cap) {
        size_t ncap = s->pm_cap ? 2 * s->pm_cap : 1 << 16;
        pentry *n = dsv3_calloc(ncap, sizeof *n);
        for (size_t i = 0; i < s->pm_cap; i++) {
            if (!s->pm[i].key) continue;
            size_t j = (s->pm[i].key * 0x9E3779B97F4A7C15ull) >> 20 & (ncap - 1);
            while (n[j].key) j = (j + 1) & (ncap - 1);
            n[j] = s->pm[i];
        }
        free(s->pm);
        s->pm = n, s->pm_cap = ncap;
    }
    size_t j = (key * 0x9E3779B97F4A7C15ull) >> 20 & (s->pm_cap - 1);
    while (s->pm[j].key) {
        if (s->pm[j].key == key) return &s->pm[j];
        j = (j + 1) & (s->pm_cap - 1);
    }
    if (!insert) return NULL;
    s->pm[j].key = key, s->pm[j].count = 0, s->pm[j].wtu = -1;
    s->pm_n++;
    return &s->pm[j];
}

static int32_t pl_new(tstate *s) {
    if (s->pl_nfree) return s->pl_free[--s->pl_nfree];
    if (s->pl_n == s->pl_cap) {
        s->pl_cap = s->pl_cap ? 2 * s->pl_cap : 1 << 12;
        s->pl = dsv3_realloc(s->pl, (size_t)s->pl_cap * sizeof *s->pl);
        s->pl_free = dsv3_realloc(s->pl_free, (size_t)s->pl_cap * sizeof *s->pl_free);
    }
    s->pl[s->pl_n] = (plist){0};
    return s->pl_n++;
}

static void pl_release(tstate *s, int32_t id) {
    s->pl[id].n = 0; // keep the buffer for reuse
    s->pl_free[s->pl_nfree++] = id;
}

static void pl_add_word(tstate *s, int32_t id, int32_t w) {
    plist *l = &s->pl[id];
    if (l->n && l->v[l->n - 1] == w) return; // a word is processed in one go: duplicates are adjacent
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        l->v = dsv3_realloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = w;
}

// Heap order: larger count first; equal counts: smaller (a, b) first.
static int h_before(const hentry *x, const hentry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_push(tstate *s, hentry e) {
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? 2 * s->heap_cap : 1 << 14;
        s->heap = dsv3_realloc(s->heap, s->heap_cap * sizeof *s->heap);
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!h_before(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
}

static hentry heap_pop(tstate *s) {
    hentry top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!h_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

// Pair (p, q) gains `delta` occurrences in word w (weighted by the word's count). New occurrences
// (delta > 0) also record w in the pair's "where to update" list for this step.
static void pair_change(tstate *s, int32_t p, int32_t q, int delta, int32_t w) {
    uint64_t key = pkey(p, q);
    pentry *e = pm_get(s, key, 1);
    e->count += delta * s->wcount[w];
    if (delta > 0) {
        if (e->wtu < 0) {
            int32_t id = pl_new(s);
            e = pm_get(s, key, 0); // pl_new does not move the map, but stay safe
            e->wtu = id;
            if (s->touched_n == s->touched_cap) {
                s->touched_cap = s->touched_cap ? 2 * s->touched_cap : 1024;
                s->touched = dsv3_realloc(s->touched, s->touched_cap * sizeof *s->touched);
            }
            s->touched[s->touched_n++] = key;
        }
        pl_add_word(s, e->wtu, w);
    }
}

// Turn this step's new pair occurrences into heap entries (HF: where_to_update.drain()).
static void flush_touched(tstate *s) {
    for (size_t i = 0; i < s->touched_n; i++) {
        pentry *e = pm_get(s, s->touched[i], 0);
        if (e->count > 0)
            heap_push(s, (hentry){e->count, (int32_t)(e->key >> 32), (int32_t)(uint32_t)e->key, e->wtu});
        else
            pl_release(s, e->wtu);
        e->wtu = -1;
    }
    s->touched_n = 0;
}

// Merge every non-overlapping (a, b), left to right, in word w; report pair changes exactly as HF's
// Word::merge does (the previous symbol is the already-merged one, the next one is still original).
static void word_merge(tstate *s, int32_t w, int32_t a, int32_t b, int32_t nt) {
    int32_t *x = s->sym + s->woff[w];
    int32_t len = s->wlen[w], j = 0, r = 0;
    while (r < len) {
        if (r + 1 < len && x[r] == a && x[r + 1] == b) {
            if (j > 0) {
                pair_change(s, x[j - 1], a, -1, w);
                pair_change(s, x[j - 1], nt, +1, w);
            }
            if (r + 2 < len) {
                pair_change(s, b, x[r + 2], -1, w);
                pair_change(s, nt, x[r + 2], +1, w);
            }
            x[j++] = nt;
            r += 2;
        } else {
            x[j++] = x[r++];
        }
    }
    s->wlen[w] = j;
}

static void tstate_free(tstate *s) {
    free(s->sym), free(s->woff), free(s->wlen), free(s->wcount), free(s->pm), free(s->heap);
    for (int32_t i = 0; i < s->pl_n; i++) free(s->pl[i].v);
    free(s->pl), free(s->pl_free), free(s->touched);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int dsv3_bpe_trainer_train(dsv3_bpe_trainer *t, const dsv3_bpe_train_opts *o) {
    if (t->trained) return dsv3_errorf("bpe train: trainer already trained");
    int base = DSV3_BPE_NUM_SPECIAL + 256;
    if (o->vocab_size < base || o->vocab_size > (1 << 24))
        return dsv3_errorf("bpe train: --vocab-size must be in [%d, %d] (3 special + 256 byte tokens + merges), got %d",
                           base, 1 << 24, o->vocab_size);
    t->trained = 1;
    double t0 = now_s();

    // 1. vocab: specials, then bytes ordered by their ByteLevel code point.
    for (int i = 0; i < DSV3_BPE_NUM_SPECIAL; i++) tok_add(t, k_special[i], strlen(k_special[i]));
    int32_t byte_id[256];
    // GPT-2 map: 33..126, 161..172, 174..255 map to themselves (code point < 256); the rest to 256+k in
    // byte order. So code-point order = the self-mapped bytes ascending, then the others ascending.
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < 256; c++) {
            int self = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
            if (self == (pass == 0)) {
                char ch = (char)c;
                byte_id[c] = tok_add(t, &ch, 1);
            }
        }
    t->tmap_cap = 1;
    while (t->tmap_cap < 2 * (size_t)o->vocab_size + 1024) t->tmap_cap <<= 1;
    t->tmap = dsv3_malloc(t->tmap_cap * sizeof *t->tmap);
    memset(t->tmap, 0xff, t->tmap_cap * sizeof *t->tmap);
    for (int id = DSV3_BPE_NUM_SPECIAL; id < t->ntok; id++) tmap_find(t, tok_bytes(t, id), 1, id);

    // 2. words -> symbol arrays
    tstate s = {0};
    wmap *m = &t->words;
    size_t total = m->arena_n;
    s.sym = dsv3_malloc((total ? total : 1) * sizeof *s.sym);
    s.woff = dsv3_malloc((m->n ? m->n : 1) * sizeof *s.woff);
    s.wlen = dsv3_malloc((m->n ? m->n : 1) * sizeof *s.wlen);
    s.wcount = dsv3_malloc((m->n ? m->n : 1) * sizeof *s.wcount);
    size_t at = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hash[i]) continue;
        size_t w = s.nwords++;
        const unsigned char *p = (const unsigned char *)m->arena + m->off[i];
        s.woff[w] = at, s.wlen[w] = (int32_t)m->len[i], s.wcount[w] = m->count[i];
        for (uint32_t k = 0; k < m->len[i]; k++) s.sym[at++] = byte_id[p[k]];
    }

    // 3. initial pair counts and heap
    for (size_t w = 0; w < s.nwords; w++) {
        int32_t *x = s.sym + s.woff[w];
        for (int32_t k = 0; k + 1 < s.wlen[w]; k++) pair_change(&s, x[k], x[k + 1], +1, (int32_t)w);
    }
    flush_touched(&s);
    if (o->progress)
        fprintf(stderr, "bpe train: %zu distinct words, %zu pairs, %.1fs\n", s.nwords, s.pm_n, now_s() - t0);

    // 4. merges
    char *buf = NULL;
    size_t buf_cap = 0;
    double last = now_s();
    while (t->ntok < o->vocab_size && s.heap_n) {
        hentry top = heap_pop(&s);
        pentry *e = pm_get(&s, pkey(top.a, top.b), 0);
        if (top.count != e->count) { // stale: counts only went down since it was pushed
            top.count = e->count;
            heap_push(&s, top);
            continue;
        }
        if (top.count < 1 || o->min_frequency > top.count) {
            pl_release(&s, top.pos);
            break;
        }
        size_t la = t->tok_len[top.a], lb = t->tok_len[top.b];
        if (la + lb > buf_cap) {
            buf_cap = 2 * (la + lb);
            buf = dsv3_realloc(buf, buf_cap);
        }
        memcpy(buf, tok_bytes(t, top.a), la);
        memcpy(buf + la, tok_bytes(t, top.b), lb);
        int32_t nt = tmap_find(t, buf, la + lb, -1);
        if (nt < 0) {
            nt = tok_add(t, buf, la + lb);
            tmap_find(t, buf, la + lb, nt);
        }
        if (t->nmerges == t->merges_cap) {
            t->merges_cap = t->merges_cap ? 2 * t->merges_cap : 1024;
            t->merges = dsv3_realloc(t->merges, (size_t)t->merges_cap * sizeof *t->merges);
        }
        t->merges[t->nmerges][0] = top.a, t->merges[t->nmerges][1] = top.b, t->merges[t->nmerges][2] = nt;
        t->nmerges++;
        // s.pl may be reallocated by word_merge (new lists), so index it afresh each time.
        for (int32_t k = 0; k < s.pl[top.pos].n; k++) word_merge(&s, s.pl[top.pos].v[k], top.a, top.b, nt);
        pl_release(&s, top.pos);
        flush_touched(&s);
        if (o->progress && now_s() - last > 1.0 && isatty(2)) {
            last = now_s();
            fprintf(stderr, "\rbpe train: %d / %d tokens (%.1fs)", t->ntok, o->vocab_size, last - t0);
        }
    }
    free(buf);
    if (o->progress)
        fprintf(stderr, "%sbpe train: %d tokens, %d merges in %.2fs\n", isatty(2) ? "\r\033[K" : "", t->ntok,
                t->nmerges, now_s() - t0);
    tstate_free(&s);
    return 0;
}

int dsv3_bpe_trainer_num_tokens(const dsv3_bpe_trainer *t) { return t->ntok; }

const char *dsv3_bpe_trainer_token(const dsv3_bpe_trainer *t, int id, size_t *len) {
    if (id < 0 || id >= t->ntok) return NULL;
    if (len) *len = t->tok_len[id];
    return tok_bytes(t, id);
}

int dsv3_bpe_trainer_num_merges(const dsv3_bpe_trainer *t) { return t->nmerges; }

void dsv3_bpe_trainer_merge(const dsv3_bpe_trainer *t, int i, int32_t *left, int32_t *right, int32_t *result) {
    DSV3_ASSERT(i >= 0 && i < t->nmerges);
    *left = t->merges[i][0], *right = t->merges[i][1], *result = t->merges[i][2];
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

typedef struct { char *p; size_t n, cap; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->cap + n + 1) * 2;
        b->p = dsv3_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

// JSON-escape raw UTF-8 text (used for special tokens and ByteLevel strings).
static void sb_json_chars(sbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            sb_puts(b, e);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
}

// The ByteLevel form of a token's bytes, JSON-escaped.
static void sb_token(sbuf *b, const dsv3_bpe_trainer *t, int id) {
    if (id < DSV3_BPE_NUM_SPECIAL) {
        sb_json_chars(b, k_special[id], strlen(k_special[id]));
        return;
    }
    const unsigned char *p = (const unsigned char *)tok_bytes(t, id);
    for (uint32_t i = 0; i < t->tok_len[id]; i++) {
        const char *u = dsv3_byte_to_unicode(p[i]);
        sb_json_chars(b, u, strlen(u));
    }
}

// Copied from DeepSeek-V3's tokenizer.json (structure only).
static const char k_normalizer[] = "{\"type\": \"Sequence\", \"normalizers\": []}";
static const char k_pre_tokenizer[] =
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, "
    "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"[\\u4e00-\\u9fa5\\u3040-\\u309f\\u30a0-\\u30ff]+\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|"
    "[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|"
    "\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
    "\"trim_offsets\": true, \"use_regex\": false}]}";
static const char k_post_processor[] =
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true}";
static const char k_decoder[] =
    "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}";

static int cmp_u64(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

int dsv3_bpe_trainer_save(const dsv3_bpe_trainer *t, const char *path) {
    if (!t->trained) return dsv3_errorf("bpe train: nothing trained yet");
    sbuf b = {0};
    char num[64];
    sb_puts(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int i = 0; i < DSV3_BPE_NUM_SPECIAL + DSV3_BPE_NUM_ADDED; i++) {
        int special = i < DSV3_BPE_NUM_SPECIAL;
        int id = special ? i : t->ntok + (i - DSV3_BPE_NUM_SPECIAL);
        snprintf(num, sizeof num, "%s\n    {\"id\": %d, \"content\": \"", i ? "," : "", id);
        sb_puts(&b, num);
        sb_json_chars(&b, k_special[i], strlen(k_special[i]));
        sb_puts(&b, special ? "\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                              "\"special\": true}"
                            : "\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
                              "\"special\": false}");
    }
    sb_puts(&b, "\n  ],\n  \"normalizer\": ");
    sb_puts(&b, k_normalizer);
    sb_puts(&b, ",\n  \"pre_tokenizer\": ");
    sb_puts(&b, k_pre_tokenizer);
    sb_puts(&b, ",\n  \"post_processor\": ");
    sb_puts(&b, k_post_processor);
    sb_puts(&b, ",\n  \"decoder\": ");
    sb_puts(&b, k_decoder);
    sb_puts(&b, ",\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
                "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
                "    \"byte_fallback\": false,\n    \"vocab\": {");
    for (int id = 0; id < t->ntok; id++) {
        sb_puts(&b, id ? ",\n      \"" : "\n      \"");
        sb_token(&b, t, id);
        snprintf(num, sizeof num, "\": %d", id);
        sb_puts(&b, num);
    }
    sb_puts(&b, "\n    },\n    \"merges\": [");
    // A pair merged twice (possible only when a merge re-creates an existing token) is kept once,
    // at its last rank, as HF's BPE model (a map pair -> rank) does.
    uint64_t *last = dsv3_malloc(((size_t)t->nmerges + 1) * sizeof *last); // pair key of each merge, in rank order
    for (int i = 0; i < t->nmerges; i++)
        last[i] = pkey(t->merges[i][0], t->merges[i][1]);
    uint64_t *sorted = dsv3_malloc(((size_t)t->nmerges + 1) * sizeof *sorted);
    memcpy(sorted, last, (size_t)t->nmerges * sizeof *sorted);
    qsort(sorted, (size_t)t->nmerges, sizeof *sorted, cmp_u64);
    int first = 1;
    for (int i = 0; i < t->nmerges; i++) {
        // skip if this pair occurs again later: count occurrences seen so far vs total
        uint64_t k = last[i];
        size_t lo = 0, hi = (size_t)t->nmerges;
        while (lo < hi) { size_t mid = (lo + hi) / 2; if (sorted[mid] < k) lo = mid + 1; else hi = mid; }
        int dup_later = 0;
        if (lo + 1 < (size_t)t->nmerges && sorted[lo + 1] == k)
            for (int j = i + 1; j < t->nmerges && !dup_later; j++) dup_later = last[j] == k;
        if (dup_later) continue;
        sb_puts(&b, first ? "\n      \"" : ",\n      \"");
        first = 0;
        sb_token(&b, t, t->merges[i][0]);
        sb_puts(&b, " ");
        sb_token(&b, t, t->merges[i][1]);
        sb_puts(&b, "\"");
    }
    free(last), free(sorted);
    sb_puts(&b, "\n    ]\n  }\n}\n");
    dsv3_writer w;
    int rc = dsv3_writer_open(&w, path);
    if (!rc) rc = dsv3_writer_write(&w, b.p, b.n);
    if (!rc) rc = dsv3_writer_commit(&w);
    else if (w.f) dsv3_writer_abort(&w);
    free(b.p);
    return rc;
}
