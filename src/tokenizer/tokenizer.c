// Byte-level BPE tokenizer loaded from HF tokenizer.json, exact against HF `tokenizers`.
//
// encode(text) = added-token split (non-normalized tokens first, then normalized ones in the gaps;
// leftmost-longest, like HF's aho-corasick) -> each gap split into valid-UTF-8 runs and single
// invalid bytes -> regex pre-tokenizer (tokenizer/pretokenize.c) -> byte-level BPE per piece.
// The BPE merge loop reproduces tokenizers' `Word::merge_all`: a (rank, position) min-heap,
// lowest rank first, leftmost first among equal ranks. Results for short pieces are cached in a
// per-thread direct-mapped cache.
#include "tokenizer/tokenizer_internal.h"
#include "core/error.h"
#include "core/fileio.h"
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "core/text.h"

#define MAX_ID (1 << 22) // ids at or above this are rejected (hostile files must not make us allocate GBs)
#define DSV3_TOKENIZER_MAX_BYTES ((size_t)256 << 20) // tokenizer.json size cap (DeepSeek-V3's is 7.8 MB)

// ---------------------------------------------------------------------------------------------
// String -> id hash table (open addressing; strings live in the tokenizer's arena)

typedef struct {
    const char *s;
    uint32_t len;
    int32_t id;
} str_slot;

typedef struct {
    str_slot *slots;
    size_t mask; // capacity - 1 (capacity is a power of two)
    size_t count;
} str_map;


static void str_map_init(str_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap <<= 1;
    m->slots = dsv3_calloc(cap, sizeof(str_slot));
    m->mask = cap - 1;
    m->count = 0;
}

static str_slot *str_map_find_slot(const str_map *m, const char *s, size_t len) {
    size_t i = dsv3_hash_bytes(s, len) & m->mask;
    for (;;) {
        str_slot *e = &m->slots[i];
        if (!e->s || (e->len == len && memcmp(e->s, s, len) == 0)) return e;
        i = (i + 1) & m->mask;
    }
}

static int32_t str_map_get(const str_map *m, const char *s, size_t len) {
    if (!m->slots) return -1;
    str_slot *e = str_map_find_slot(m, s, len);
    return e->s ? e->id : -1;
}

// Insert or overwrite (later entries win, like a Rust HashMap built by collect()).
static void str_map_put(str_map *m, const char *s, size_t len, int32_t id) {
    if (2 * (m->count + 1) > m->mask + 1) { // grow
        str_map old = *m;
        str_map_init(m, 2 * old.count + 2);
        for (size_t i = 0; i <= old.mask; i++)
            if (old.slots[i].s) *str_map_find_slot(m, old.slots[i].s, old.slots[i].len) = old.slots[i], m->count++;
        free(old.slots);
    }
    str_slot *e = str_map_find_slot(m, s, len);
    if (!e->s) m->count++;
    e->s = s;
    e->len = (uint32_t)len;
    e->id = id;
}

// ---------------------------------------------------------------------------------------------
// (left id, right id) -> (rank, merged id)

typedef struct {
    uint64_t key; // UINT64_MAX = empty
    int32_t rank, new_id;
} pair_slot;

typedef struct {
    pair_slot *slots;
    size_t mask;
} pair_map;

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
static inline size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

static void pair_map_init(pair_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap <<= 1;
    m->slots = dsv3_malloc(cap * sizeof(pair_slot));
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
}

static void pair_map_put(pair_map *m, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    uint64_t k = pair_key(a, b);
    size_t i = pair_hash(k) & m->mask;
    while (m->slots[i].key != UINT64_MAX && m->slots[i].key != k) i = (i + 1) & m->mask;
    m->slots[i].key = k;
    m->slots[i].rank = rank;
    m->slots[i].new_id = new_id;
}

static inline const pair_slot *pair_map_get(const pair_map *m, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    size_t i = pair_hash(k) & m->mask;
    for (;;) {
        const pair_slot *e = &m->slots[i];
        if (e->key == k) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & m->mask;
    }
}

// ---------------------------------------------------------------------------------------------
// Added tokens: a byte trie per pass (non-normalized tokens, then normalized ones)

typedef struct {
    int32_t first_child, next_sibling, token; // token: id, or -1
    unsigned char byte;
} trie_node;

typedef struct {
    trie_node *nodes;
    int n, cap;
    unsigned char first[256]; // 1 if some token starts with this byte
    int ntokens;
} trie;

static int trie_new_node(trie *tr, unsigned char b) {
    if (tr->n == tr->cap) {
        tr->cap = tr->cap ? 2 * tr->cap : 64;
        tr->nodes = dsv3_realloc(tr->nodes, (size_t)tr->cap * sizeof(trie_node));
    }
    tr->nodes[tr->n] = (trie_node){-1, -1, -1, b};
    return tr->n++;
}

static void trie_add(trie *tr, const char *s, size_t len, int32_t id) {
    if (tr->n == 0) trie_new_node(tr, 0);
    int node = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = tr->nodes[node].first_child;
        while (c >= 0 && tr->nodes[c].byte != b) c = tr->nodes[c].next_sibling;
        if (c < 0) {
            c = trie_new_node(tr, b);
            tr->nodes[c].next_sibling = tr->nodes[node].first_child;
            tr->nodes[node].first_child = c;
        }
        node = c;
    }
    tr->nodes[node].token = id;
    tr->first[(unsigned char)s[0]] = 1;
    tr->ntokens++;
}

// Leftmost-longest match in s[0..len). Returns 1 and sets *ms, *me, *id if found.
static int trie_find(const trie *tr, const unsigned char *s, size_t len, size_t *ms, size_t *me, int32_t *id) {
    if (!tr->ntokens) return 0;
    for (size_t i = 0; i < len; i++) {
        if (!tr->first[s[i]]) continue;
        int node = 0;
        long best = -1;
        int32_t best_id = -1;
        for (size_t j = i; j < len; j++) {
            int c = tr->nodes[node].first_child;
            while (c >= 0 && tr->nodes[c].byte != s[j]) c = tr->nodes[c].next_sibling;
            if (c < 0) break;
            node = c;
            if (tr->nodes[node].token >= 0) best = (long)(j + 1), best_id = tr->nodes[node].token;
        }
        if (best >= 0) {
            *ms = i;
            *me = (size_t)best;
            *id = best_id;
            return 1;
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------

struct dsv3_tokenizer {
    char *name;            // file name for messages
    int32_t vocab_size;    // max id + 1 over model vocab and added tokens
    char *arena;           // all token strings
    size_t arena_len, arena_cap;
    str_map vocab;         // model vocab: byte-level string -> id
    str_map added;         // added token content -> id
    const char **id_str;   // [vocab_size] token string (added content first), NULL for holes
    uint32_t *id_len;      // [vocab_size]
    uint8_t *id_flags;     // [vocab_size] bit0 added, bit1 special
    char *dec;             // decoded bytes of every id, concatenated
    uint32_t *dec_off;     // [vocab_size + 1] offsets into dec
    int decoder_bytelevel; // 1: ByteLevel decoder; 0: no decoder (tokens joined with ' ')
    int32_t byte_id[256];  // vocab id of the byte-level char of each byte (-1 if absent)
    pair_map merges;
    int32_t nmerges;
    int ignore_merges;
    int32_t unk_id;        // -1: none
    int fuse_unk;
    dsv3_pretok pre;
    trie added_raw, added_norm;
    int32_t bos, eos;
    uint64_t serial;       // distinguishes tokenizers for the per-thread BPE cache
};

static atomic_uint_fast64_t g_serial = 1; // never 0 (0 marks an empty cache entry)

static const char *arena_add(dsv3_tokenizer *t, const char *s, size_t len) {
    // strings are referenced by pointer, so the arena is allocated once, large enough (see load)
    DSV3_ASSERT(t->arena_len + len + 1 <= t->arena_cap);
    char *p = t->arena + t->arena_len;
    memcpy(p, s, len);
    p[len] = 0;
    t->arena_len += len + 1;
    return p;
}

// ---------------------------------------------------------------------------------------------
// BPE on one piece

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static inline void ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->v = dsv3_realloc(v->v, v->cap * sizeof(int32_t));
    }
    v->v[v->n++] = x;
}

typedef struct {
    int32_t rank, pos, new_id;
} heap_ent;

static inline int heap_less(heap_ent a, heap_ent b) { return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos); }

static void heap_push(heap_ent *h, int *n, heap_ent e) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!heap_less(e, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, int *n) {
    heap_ent top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

// Appends the BPE ids of the piece (raw bytes) to out.
static void bpe_piece_uncached(const dsv3_tokenizer *t, const unsigned char *s, size_t len, ivec *out) {
    if (t->ignore_merges) { // HF: a piece that is itself in the vocab is one token, whatever its length
        char sbuf[512];
        sbuf[0] = 0; // (keeps -Wmaybe-uninitialized quiet; pieces are never empty)
        char *buf = len <= sizeof sbuf / 2 ? sbuf : dsv3_malloc(2 * len); // <= 2 UTF-8 bytes per byte
        size_t k = 0;
        for (size_t i = 0; i < len; i++) {
            const char *u = dsv3_byte_to_unicode(s[i]);
            while (*u) buf[k++] = *u++;
        }
        int32_t id = str_map_get(&t->vocab, buf, k);
        if (buf != sbuf) free(buf);
        if (id >= 0) {
            ivec_push(out, id);
            return;
        }
    }
    enum { STACK = 128 };
    int32_t c_s[STACK], prev_s[STACK], next_s[STACK];
    heap_ent h_s[2 * STACK];
    int32_t *c = c_s, *prev = prev_s, *next = next_s;
    heap_ent *h = h_s;
    // Merge can push at most 2 entries per merge plus n-1 initial entries: < 3n.
    if (len > STACK) {
        c = dsv3_malloc(len * sizeof(int32_t));
        prev = dsv3_malloc(len * sizeof(int32_t));
        next = dsv3_malloc(len * sizeof(int32_t));
        h = dsv3_malloc(3 * len * sizeof(heap_ent));
    } else if (3 * len > 2 * STACK) {
        h = dsv3_malloc(3 * len * sizeof(heap_ent));
    }
    int n = 0;
    int pending_unk = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) {
            if (t->unk_id < 0) continue; // dropped, as HF does without an unk token
            if (t->fuse_unk && pending_unk) continue;
            id = t->unk_id;
            pending_unk = 1;
        } else {
            pending_unk = 0;
        }
        c[n] = id;
        n++;
    }
    for (int i = 0; i < n; i++) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
    int hn = 0;
    for (int i = 0; i + 1 < n; i++) {
        const pair_slot *m = pair_map_get(&t->merges, c[i], c[i + 1]);
        if (m) heap_push(h, &hn, (heap_ent){m->rank, i, m->new_id});
    }
    while (hn > 0) {
        heap_ent top = heap_pop(h, &hn);
        int pos = top.pos;
        if (c[pos] < 0) continue;  // removed
        int nx = next[pos];
        if (nx < 0) continue;
        const pair_slot *m = pair_map_get(&t->merges, c[pos], c[nx]);
        if (!m || m->new_id != top.new_id) continue; // stale entry
        c[pos] = top.new_id;
        c[nx] = -1;
        next[pos] = next[nx];
        if (next[pos] >= 0) prev[next[pos]] = pos;
        if (prev[pos] >= 0) {
            const pair_slot *pm = pair_map_get(&t->merges, c[prev[pos]], c[pos]);
            if (pm) heap_push(h, &hn, (heap_ent){pm->rank, prev[pos], pm->new_id});
        }
        if (next[pos] >= 0) {
            const pair_slot *nm = pair_map_get(&t->merges, c[pos], c[next[pos]]);
            if (nm) heap_push(h, &hn, (heap_ent){nm->rank, pos, nm->new_id});
        }
    }
    for (int i = 0; i >= 0 && i < n; i = next[i]) ivec_push(out, c[i]);
    if (c != c_s) free(c), free(prev), free(next);
    if (h != h_s) free(h);
}

// Per-thread direct-mapped cache of BPE results for short pieces.
#ifndef CACHE_SLOTS
#define CACHE_SLOTS 16384 // power of two
#endif
#define CACHE_KEY 24
#define CACHE_IDS 10
typedef struct {
    uint64_t hash;
    uint32_t serial;    // tokenizer that wrote the entry (0 = empty), so tokenizers can share the cache
    uint8_t klen, nids;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_ent;
typedef struct {
    cache_ent e[CACHE_SLOTS];
} bpe_cache;

static pthread_key_t g_cache_key;
static pthread_once_t g_cache_once = PTHREAD_ONCE_INIT;
static void cache_key_init(void) { pthread_key_create(&g_cache_key, free); }

static bpe_cache *thread_cache(const dsv3_tokenizer *t) {
    pthread_once(&g_cache_once, cache_key_init);
    bpe_cache *c = pthread_getspecific(g_cache_key);
    if (!c) {
        c = dsv3_calloc(1, sizeof *c);
        pthread_setspecific(g_cache_key, c);
    }
    return c;
}

static void bpe_piece(const dsv3_tokenizer *t, bpe_cache *cache, const unsigned char *s, size_t len, ivec *out) {
    if (len == 1 && !t->ignore_merges && t->byte_id[s[0]] >= 0) {
        ivec_push(out, t->byte_id[s[0]]);
        return;
    }
    if (len > CACHE_KEY) {
        bpe_piece_uncached(t, s, len, out);
        return;
    }
    uint64_t h = dsv3_hash_bytes(s, len);
    cache_ent *e = &cache->e[h & (CACHE_SLOTS - 1)];
    uint32_t serial = (uint32_t)t->serial;
    if (e->serial == serial && e->klen == len && e->hash == h && memcmp(e->key, s, len) == 0) {
        for (int i = 0; i < e->nids; i++) ivec_push(out, e->ids[i]);
        return;
    }
    size_t start = out->n;
    bpe_piece_uncached(t, s, len, out);
    size_t nids = out->n - start;
    if (nids <= CACHE_IDS) {
        e->hash = h;
        e->serial = serial;
        e->klen = (uint8_t)len;
        e->nids = (uint8_t)nids;
        memcpy(e->key, s, len);
        if (nids) memcpy(e->ids, out->v + start, nids * sizeof(int32_t));
    }
}

// ---------------------------------------------------------------------------------------------
// Encode

typedef struct {
    const dsv3_tokenizer *t;
    bpe_cache *cache;
    ivec *out;
} encode_ctx;

static void on_piece(const char *piece, size_t len, void *ctx) {
    encode_ctx *ec = ctx;
    bpe_piece(ec->t, ec->cache, (const unsigned char *)piece, len, ec->out);
}

static int encode_gap_normalized(const dsv3_tokenizer *t, encode_ctx *ec, const unsigned char *s, size_t len) {
    size_t pos = 0;
    while (pos < len) {
        size_t ms, me;
        int32_t id;
        if (!trie_find(&t->added_norm, s + pos, len - pos, &ms, &me, &id)) ms = me = len - pos, id = -1;
        if (ms > 0 && dsv3_pretok_run(&t->pre, (const char *)s + pos, ms, on_piece, ec)) return -1;
        if (id >= 0) ivec_push(ec->out, id);
        pos += me;
    }
    return 0;
}

int dsv3_tokenizer_encode(const dsv3_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                          size_t *n) {
    *ids = NULL;
    *n = 0;
    if (add_bos && t->bos < 0) return dsv3_errorf("%s: tokenizer has no BOS token", t->name);
    ivec out = {0};
    encode_ctx ec = {t, thread_cache(t), &out};
    if (add_bos) ivec_push(&out, t->bos);
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0;
    while (pos < len) {
        size_t ms, me;
        int32_t id;
        if (!trie_find(&t->added_raw, s + pos, len - pos, &ms, &me, &id)) ms = me = len - pos, id = -1;
        if (ms > 0 && encode_gap_normalized(t, &ec, s + pos, ms)) {
            free(out.v);
            return -1;
        }
        if (id >= 0) ivec_push(&out, id);
        pos += me;
    }
    if (!out.v) out.v = dsv3_malloc(sizeof(int32_t)); // never return NULL on success
    *ids = out.v;
    *n = out.n;
    return 0;
}

int dsv3_tokenizer_pretokenize(const dsv3_tokenizer *t, const char *text, size_t len, dsv3_piece_fn fn, void *ctx) {
    return dsv3_pretok_run(&t->pre, text, len, fn, ctx);
}

// ---------------------------------------------------------------------------------------------
// Decode

static char *decode_impl(const dsv3_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len_out) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->id_str[id]) {
            dsv3_errorf("%s: token id %d at position %zu is not in the vocabulary (0..%d)", t->name, (int)id, i,
                        (int)t->vocab_size - 1);
            return NULL;
        }
        total += t->dec_off[id + 1] - t->dec_off[id] + 1;
    }
    char *buf = dsv3_malloc(total), *p = buf;
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (t->id_flags[id] & 2)) continue;
        if (!t->decoder_bytelevel && !first) *p++ = ' ';
        first = 0;
        size_t k = t->dec_off[id + 1] - t->dec_off[id];
        memcpy(p, t->dec + t->dec_off[id], k);
        p += k;
    }
    *p = 0;
    if (len_out) *len_out = (size_t)(p - buf);
    return buf;
}

char *dsv3_tokenizer_decode(const dsv3_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len) {
    return decode_impl(t, ids, n, skip_special, len);
}

// Rust String::from_utf8_lossy: each maximal prefix of a would-be-valid sequence becomes one U+FFFD.
char *dsv3_tokenizer_decode_lossy(const dsv3_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                                  size_t *len) {
    size_t rl;
    char *raw = decode_impl(t, ids, n, skip_special, &rl);
    if (!raw) return NULL;
    const unsigned char *s = (const unsigned char *)raw;
    char *out = dsv3_malloc(3 * rl + 1), *p = out;
    size_t i = 0;
    while (i < rl) {
        int k = dsv3_utf8_seq_len(s + i, rl - i);
        if (k) {
            memcpy(p, s + i, (size_t)k);
            p += k;
            i += (size_t)k;
            continue;
        }
        unsigned c = s[i];
        size_t adv = 1;
        unsigned lo = 0x80, hi = 0xBF;
        int need = 0;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (need >= 1 && i + 1 < rl && s[i + 1] >= lo && s[i + 1] <= hi) {
            adv = 2;
            if (need >= 2 && i + 2 < rl && (s[i + 2] & 0xC0) == 0x80) {
                adv = 3; // need == 3 here (a complete 3-byte sequence would have been valid)
            }
        }
        memcpy(p, "\xEF\xBF\xBD", 3);
        p += 3;
        i += adv;
    }
    *p = 0;
    if (len) *len = (size_t)(p - out);
    free(raw);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Queries

int dsv3_tokenizer_vocab_size(const dsv3_tokenizer *t) { return t->vocab_size; }
int dsv3_tokenizer_token_to_id(const dsv3_tokenizer *t, const char *token) {
    size_t len = strlen(token);
    int32_t id = str_map_get(&t->added, token, len);
    return id >= 0 ? id : str_map_get(&t->vocab, token, len);
}
const char *dsv3_tokenizer_id_to_token(const dsv3_tokenizer *t, int id) {
    return (id >= 0 && id < t->vocab_size) ? t->id_str[id] : NULL;
}
int dsv3_tokenizer_is_special(const dsv3_tokenizer *t, int id) {
    return id >= 0 && id < t->vocab_size && (t->id_flags[id] & 2);
}
int dsv3_tokenizer_bos_id(const dsv3_tokenizer *t) { return t->bos; }
int dsv3_tokenizer_eos_id(const dsv3_tokenizer *t) { return t->eos; }

void dsv3_tokenizer_free(dsv3_tokenizer *t) {
    if (!t) return;
    free(t->name);
    free(t->arena);
    free(t->vocab.slots);
    free(t->added.slots);
    free(t->id_str);
    free(t->id_len);
    free(t->id_flags);
    free(t->dec);
    free(t->dec_off);
    free(t->merges.slots);
    dsv3_pretok_free(&t->pre);
    free(t->added_raw.nodes);
    free(t->added_norm.nodes);
    free(t);
}

// ---------------------------------------------------------------------------------------------
// Loading

#define LOAD_FAIL(...) do { dsv3_errorf(__VA_ARGS__); goto fail; } while (0)

static const char *json_type_name(const cJSON *j) {
    if (!j) return "nothing";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid JSON";
}

// Integer id in [0, MAX_ID). Returns -1 otherwise.
static int32_t json_id(const cJSON *j) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d < MAX_ID) || d != (double)(int32_t)d) return -1;
    return (int32_t)d;
}

// Optional boolean field: 0/1, `def` if absent or null, -1 if present with another type.
static int json_bool(const cJSON *obj, const char *key, int def) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) return def;
    if (!cJSON_IsBool(j)) return -1;
    return cJSON_IsTrue(j);
}

static int check_normalizer(const cJSON *n, const char *name) {
    if (!n || cJSON_IsNull(n)) return 0;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type");
    if (!cJSON_IsString(type)) return dsv3_errorf("%s: normalizer has no \"type\" string", name);
    if (strcmp(type->valuestring, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list)) return dsv3_errorf("%s: normalizer Sequence has no \"normalizers\" array", name);
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (check_normalizer(e, name)) return -1;
        return 0;
    }
    return dsv3_errorf("%s: unsupported normalizer type \"%s\" (only none / an empty Sequence is supported)", name,
                       type->valuestring);
}

// Adds the pre-tokenizer steps of `pt` to t->pre. *bytelevel_seen tracks the (required, last) ByteLevel.
static int add_pretokenizer(dsv3_tokenizer *t, const cJSON *pt, int *bytelevel_seen, int depth) {
    const char *name = t->name;
    if (depth > 8) return dsv3_errorf("%s: pre_tokenizer nested too deeply", name);
    if (!cJSON_IsObject(pt)) return dsv3_errorf("%s: pre_tokenizer must be an object, found %s", name, json_type_name(pt));
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(type)) return dsv3_errorf("%s: pre_tokenizer has no \"type\" string", name);
    const char *ty = type->valuestring;
    if (*bytelevel_seen)
        return dsv3_errorf("%s: pre_tokenizer step \"%s\" after ByteLevel is not supported (ByteLevel must be last)",
                           name, ty);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (!cJSON_IsArray(list)) return dsv3_errorf("%s: pre_tokenizer Sequence has no \"pretokenizers\" array", name);
        const cJSON *e;
        cJSON_ArrayForEach(e, list) if (add_pretokenizer(t, e, bytelevel_seen, depth + 1)) return -1;
        return 0;
    }
    if (strcmp(ty, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pt, "behavior");
        int invert = json_bool(pt, "invert", 0);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return dsv3_errorf("%s: Split behavior %s%s%s is not supported (only \"Isolated\")", name,
                               cJSON_IsString(beh) ? "\"" : "", cJSON_IsString(beh) ? beh->valuestring : json_type_name(beh),
                               cJSON_IsString(beh) ? "\"" : "");
        if (invert != 0) return dsv3_errorf("%s: Split with invert=true (or a non-boolean invert) is not supported", name);
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *p = re ? re : lit;
        if (!cJSON_IsObject(pat) || !cJSON_IsString(p))
            return dsv3_errorf("%s: Split pattern must be {\"Regex\": string} or {\"String\": string}", name);
        if (dsv3_pretok_add_step(&t->pre, p->valuestring, strlen(p->valuestring), p == lit))
            return dsv3_error_context("%s", name);
        return 0;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        int aps = json_bool(pt, "add_prefix_space", 1), use_regex = json_bool(pt, "use_regex", 1);
        if (aps < 0 || use_regex < 0)
            return dsv3_errorf("%s: ByteLevel add_prefix_space / use_regex must be booleans", name);
        *bytelevel_seen = 1;
        if (aps) t->pre.prefix_space_at = t->pre.nsteps;
        if (use_regex && dsv3_pretok_add_step(&t->pre, dsv3_gpt2_pattern, strlen(dsv3_gpt2_pattern), 0))
            return dsv3_error_context("%s", name);
        return 0;
    }
    return dsv3_errorf("%s: unsupported pre_tokenizer type \"%s\" (supported: Sequence, Split, ByteLevel)", name, ty);
}

static int check_decoder(dsv3_tokenizer *t, const cJSON *d) {
    if (!d || cJSON_IsNull(d)) {
        t->decoder_bytelevel = 0;
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(d, "type");
    if (!cJSON_IsString(type)) return dsv3_errorf("%s: decoder has no \"type\" string", t->name);
    if (strcmp(type->valuestring, "ByteLevel") != 0)
        return dsv3_errorf("%s: unsupported decoder type \"%s\" (only ByteLevel)", t->name, type->valuestring);
    t->decoder_bytelevel = 1;
    return 0;
}

// Bytes that the ByteLevel decoder gives for one token string: the byte of each char if every char
// is in the byte-level alphabet, else the string itself (as HF does).
static size_t bytelevel_decode_token(const char *s, size_t len, char *out) {
    size_t i = 0, k = 0;
    while (i < len) {
        size_t used;
        int b = dsv3_unicode_to_byte(s + i, len - i, &used);
        if (b < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[k++] = (char)b;
        i += used;
    }
    return k;
}

// bos_token / eos_token of tokenizer_config.json: a string, an AddedToken object with a string
// "content", or null (no such token, as in HF); absent (or no config file) -> the DeepSeek-V3 name.
// Anything else is an error rather than a silent fallback. *id = -1 when the name is not a token.
static int lookup_special_name(const dsv3_tokenizer *t, const cJSON *cfg, const char *cfg_path, const char *key,
                               const char *fallback, int32_t *id) {
    const cJSON *j = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, key) : NULL;
    const char *s = fallback;
    if (j && cJSON_IsNull(j)) { *id = -1; return 0; }
    if (j) {
        const cJSON *c = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "content") : j;
        if (!cJSON_IsString(c))
            return dsv3_errorf("%s: field '%s': expected a string or an object with a string \"content\", found %s",
                               cfg_path, key, cJSON_IsObject(j) ? (c ? json_type_name(c) : "an object without \"content\"")
                                                                : json_type_name(j));
        s = c->valuestring;
    }
    *id = dsv3_tokenizer_token_to_id(t, s);
    return 0;
}

static dsv3_tokenizer *load_from_json(const char *json, size_t len, const char *name, const char *config_path) {
    dsv3_tokenizer *t = dsv3_calloc(1, sizeof *t);
    t->name = dsv3_strdup(name);
    t->pre.prefix_space_at = -1;
    t->unk_id = -1;
    t->serial = atomic_fetch_add(&g_serial, 1);
    if ((uint32_t)t->serial == 0) t->serial = atomic_fetch_add(&g_serial, 1); // after 2^32 loads
    cJSON *root = cJSON_ParseWithLength(json, len), *cfg = NULL;
    int32_t *added_ids = NULL;
    if (!root) {
        size_t off = cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - json) : 0;
        LOAD_FAIL("%s: not valid JSON (parse error near byte %zu)", name, off);
    }
    if (!cJSON_IsObject(root)) LOAD_FAIL("%s: top level must be a JSON object, found %s", name, json_type_name(root));
    // cJSON strings end at the first NUL: a token or pattern holding \u0000 (or a raw NUL byte, which
    // cJSON accepts inside strings) would be silently cut (e.g. "b\u0000c" would become the token
    // "b"), so such files are rejected.
    if (dsv3_json_has_nul_escape(json, len) || memchr(json, 0, len))
        LOAD_FAIL("%s: a \\u0000 escape or NUL byte (NUL character) in a string is not supported", name);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) LOAD_FAIL("%s: \"model\" must be an object, found %s", name, json_type_name(model));
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsString(mtype)) LOAD_FAIL("%s: model has no \"type\" string", name);
    if (strcmp(mtype->valuestring, "BPE") != 0)
        LOAD_FAIL("%s: unsupported model type \"%s\" (only BPE)", name, mtype->valuestring);
    const cJSON *j;
    if ((j = cJSON_GetObjectItemCaseSensitive(model, "dropout")) && !cJSON_IsNull(j) &&
        !(cJSON_IsNumber(j) && j->valuedouble == 0))
        LOAD_FAIL("%s: BPE dropout is not supported (found %s)", name, json_type_name(j));
    if ((j = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix")) && !cJSON_IsNull(j) &&
        !(cJSON_IsString(j) && !*j->valuestring))
        LOAD_FAIL("%s: BPE continuing_subword_prefix is not supported", name);
    if ((j = cJSON_GetObjectItemCaseSensitive(model, "end_of_word_suffix")) && !cJSON_IsNull(j) &&
        !(cJSON_IsString(j) && !*j->valuestring))
        LOAD_FAIL("%s: BPE end_of_word_suffix is not supported", name);
    int bf = json_bool(model, "byte_fallback", 0), im = json_bool(model, "ignore_merges", 0),
        fu = json_bool(model, "fuse_unk", 0);
    if (bf != 0) LOAD_FAIL("%s: BPE byte_fallback=true is not supported (byte-level BPE only)", name);
    if (im < 0 || fu < 0) LOAD_FAIL("%s: BPE ignore_merges / fuse_unk must be booleans", name);
    t->ignore_merges = im;
    t->fuse_unk = fu;
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "truncation")) && !cJSON_IsNull(j))
        LOAD_FAIL("%s: \"truncation\" is set; only null is supported", name);
    if ((j = cJSON_GetObjectItemCaseSensitive(root, "padding")) && !cJSON_IsNull(j))
        LOAD_FAIL("%s: \"padding\" is set; only null is supported", name);
    if (check_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name)) goto fail;
    if (check_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"))) goto fail;
    {
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
        int seen = 0;
        if (!pt || cJSON_IsNull(pt)) LOAD_FAIL("%s: no pre_tokenizer; only byte-level (ByteLevel) tokenizers are supported", name);
        if (add_pretokenizer(t, pt, &seen, 0)) goto fail;
        if (!seen) LOAD_FAIL("%s: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported", name);
    }

    // vocab
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) LOAD_FAIL("%s: model.vocab must be an object, found %s", name, json_type_name(vocab));
    if (!cJSON_IsArray(merges)) LOAD_FAIL("%s: model.merges must be an array, found %s", name, json_type_name(merges));
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        LOAD_FAIL("%s: added_tokens must be an array, found %s", name, json_type_name(added));
    size_t nvocab = 0, arena = 0, nadded = 0;
    int32_t max_id = -1;
    cJSON_ArrayForEach(j, vocab) {
        int32_t id = json_id(j);
        if (id < 0)
            LOAD_FAIL("%s: model.vocab[\"%.60s\"] must be an integer id in 0..%d, found %s", name, j->string, MAX_ID - 1,
                      cJSON_IsNumber(j) ? "an out-of-range number" : json_type_name(j));
        if (id > max_id) max_id = id;
        arena += strlen(j->string) + 1;
        nvocab++;
    }
    if (cJSON_IsArray(added)) {
        cJSON_ArrayForEach(j, added) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "content");
            int32_t id = json_id(cJSON_GetObjectItemCaseSensitive(j, "id"));
            if (!cJSON_IsString(c) || id < 0)
                LOAD_FAIL("%s: added_tokens[%zu] needs a string \"content\" and an integer \"id\" in 0..%d", name, nadded,
                          MAX_ID - 1);
            if (id > max_id) max_id = id;
            arena += strlen(c->valuestring) + 1;
            nadded++;
        }
    }
    if (max_id < 0) LOAD_FAIL("%s: empty vocabulary", name);
    t->arena_cap = arena + 1;
    t->arena = dsv3_malloc(t->arena_cap);
    str_map_init(&t->vocab, nvocab);
    str_map_init(&t->added, nadded);
    cJSON_ArrayForEach(j, vocab) {
        size_t l = strlen(j->string);
        str_map_put(&t->vocab, arena_add(t, j->string, l), l, json_id(j));
    }
    // Added-token ids as HF assigns them (it ignores the "id" fields, only warning on a mismatch): the
    // model's id if the content is in the vocab, else the next free id, counting from the number of
    // vocab entries. Empty and repeated contents are skipped.
    added_ids = dsv3_malloc((nadded + 1) * sizeof(int32_t));
    if (cJSON_IsArray(added)) {
        size_t k = 0, base = t->vocab.count;
        int32_t max_added = -1;
        cJSON_ArrayForEach(j, added) {
            const char *c = cJSON_GetObjectItemCaseSensitive(j, "content")->valuestring;
            size_t l = strlen(c);
            int32_t id = -1;
            if (l > 0 && str_map_get(&t->added, c, l) < 0) {
                id = str_map_get(&t->vocab, c, l);
                if (id < 0) id = max_added < 0 ? (int32_t)base : ((size_t)max_added >= base || base == 0) ? max_added + 1 : (int32_t)base;
                if (id >= MAX_ID) LOAD_FAIL("%s: too many added tokens (id %d would exceed %d)", name, id, MAX_ID - 1);
                str_map_put(&t->added, arena_add(t, c, l), l, id);
                if (id > max_added) max_added = id;
                if (id > max_id) max_id = id;
            }
            added_ids[k++] = id;
        }
    }
    t->vocab_size = max_id + 1;
    t->id_str = dsv3_calloc((size_t)t->vocab_size, sizeof(char *));
    t->id_len = dsv3_calloc((size_t)t->vocab_size, sizeof(uint32_t));
    t->id_flags = dsv3_calloc((size_t)t->vocab_size, 1);
    for (size_t i = 0; i <= t->vocab.mask; i++) {
        const str_slot *e = &t->vocab.slots[i];
        if (e->s) t->id_str[e->id] = e->s, t->id_len[e->id] = e->len;
    }
    for (int b = 0; b < 256; b++) t->byte_id[b] = str_map_get(&t->vocab, dsv3_byte_to_unicode((unsigned char)b), strlen(dsv3_byte_to_unicode((unsigned char)b)));
    {
        const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
        if (cJSON_IsString(unk)) {
            t->unk_id = str_map_get(&t->vocab, unk->valuestring, strlen(unk->valuestring));
            if (t->unk_id < 0) LOAD_FAIL("%s: model.unk_token \"%.60s\" is not in the vocab", name, unk->valuestring);
        } else if (unk && !cJSON_IsNull(unk)) {
            LOAD_FAIL("%s: model.unk_token must be a string or null, found %s", name, json_type_name(unk));
        }
    }

    // merges: "a b" strings (legacy) or ["a", "b"] pairs
    {
        int nm = cJSON_GetArraySize(merges);
        pair_map_init(&t->merges, (size_t)nm);
        char *cat = NULL;
        size_t catcap = 0;
        int rank = 0;
        cJSON_ArrayForEach(j, merges) {
            const char *a, *b;
            size_t la, lb;
            if (cJSON_IsString(j)) {
                const char *sp = strchr(j->valuestring, ' ');
                if (!sp || strchr(sp + 1, ' '))
                    { free(cat); LOAD_FAIL("%s: model.merges[%d] \"%.60s\" must be two tokens separated by one space", name, rank, j->valuestring); }
                a = j->valuestring, la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
            } else if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2 && cJSON_IsString(cJSON_GetArrayItem(j, 0)) &&
                       cJSON_IsString(cJSON_GetArrayItem(j, 1))) {
                a = cJSON_GetArrayItem(j, 0)->valuestring, la = strlen(a);
                b = cJSON_GetArrayItem(j, 1)->valuestring, lb = strlen(b);
            } else {
                free(cat);
                LOAD_FAIL("%s: model.merges[%d] must be a \"a b\" string or a [\"a\", \"b\"] pair, found %s", name, rank,
                          json_type_name(j));
            }
            int32_t ia = str_map_get(&t->vocab, a, la), ib = str_map_get(&t->vocab, b, lb);
            if (ia < 0 || ib < 0) {
                free(cat);
                LOAD_FAIL("%s: model.merges[%d] refers to token \"%.*s\" which is not in the vocab", name, rank,
                          (int)(ia < 0 ? (la > 60 ? 60 : la) : (lb > 60 ? 60 : lb)), ia < 0 ? a : b);
            }
            if (la + lb > catcap) catcap = 2 * (la + lb), cat = dsv3_realloc(cat, catcap);
            memcpy(cat, a, la);
            memcpy(cat + la, b, lb);
            int32_t im2 = str_map_get(&t->vocab, cat, la + lb);
            if (im2 < 0) {
                free(cat);
                LOAD_FAIL("%s: model.merges[%d]: merged token \"%.*s\" is not in the vocab", name, rank,
                          (int)(la + lb > 60 ? 60 : la + lb), a); // a and b are adjacent only in cat; show a prefix
            }
            pair_map_put(&t->merges, ia, ib, rank, im2);
            rank++;
        }
        free(cat);
        t->nmerges = rank;
    }

    // added tokens
    if (cJSON_IsArray(added)) {
        size_t k = 0;
        cJSON_ArrayForEach(j, added) {
            const char *c = cJSON_GetObjectItemCaseSensitive(j, "content")->valuestring;
            int32_t id = added_ids[k];
            int special = json_bool(j, "special", 0), normalized = json_bool(j, "normalized", 1);
            int lstrip = json_bool(j, "lstrip", 0), rstrip = json_bool(j, "rstrip", 0), sw = json_bool(j, "single_word", 0);
            if (special < 0 || normalized < 0 || lstrip < 0 || rstrip < 0 || sw < 0)
                LOAD_FAIL("%s: added_tokens[%zu]: special/normalized/lstrip/rstrip/single_word must be booleans", name, k);
            if (lstrip || rstrip || sw)
                LOAD_FAIL("%s: added_tokens[%zu] (\"%.60s\"): lstrip/rstrip/single_word are not supported", name, k, c);
            if (id >= 0) {
                size_t l = strlen(c);
                const char *s = t->added.slots ? str_map_find_slot(&t->added, c, l)->s : NULL; // arena copy
                t->id_str[id] = s;
                t->id_len[id] = (uint32_t)l;
                t->id_flags[id] = (uint8_t)(1 | (special ? 2 : 0));
                // HF partitions added tokens by `normalized` only: the non-normalized ones split the raw
                // text first, the normalized ones then split the gaps.
                trie_add(normalized ? &t->added_norm : &t->added_raw, c, l, id);
            }
            k++;
        }
    }

    // decoded bytes per id
    {
        size_t total = 0;
        for (int32_t i = 0; i < t->vocab_size; i++) total += t->id_len[i];
        t->dec = dsv3_malloc(total + 1);
        t->dec_off = dsv3_malloc(((size_t)t->vocab_size + 1) * sizeof(uint32_t));
        size_t off = 0;
        for (int32_t i = 0; i < t->vocab_size; i++) {
            t->dec_off[i] = (uint32_t)off;
            if (!t->id_str[i]) continue;
            if (t->decoder_bytelevel) off += bytelevel_decode_token(t->id_str[i], t->id_len[i], t->dec + off);
            else memcpy(t->dec + off, t->id_str[i], t->id_len[i]), off += t->id_len[i];
        }
        t->dec_off[t->vocab_size] = (uint32_t)off;
    }

    // BOS / EOS
    if (config_path && dsv3_file_exists(config_path)) {
        size_t cl;
        char *ctext = dsv3_read_file_max(config_path, DSV3_READ_MAX_JSON, "a tokenizer_config.json", &cl);
        if (!ctext) goto fail;
        cfg = cJSON_ParseWithLength(ctext, cl);
        free(ctext);
        if (!cJSON_IsObject(cfg)) LOAD_FAIL("%s: not a JSON object", config_path);
    }
    if (lookup_special_name(t, cfg, config_path, "bos_token",
                            "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", &t->bos) ||
        lookup_special_name(t, cfg, config_path, "eos_token",
                            "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", &t->eos))
        goto fail;
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    free(added_ids);
    return t;
fail:
    free(added_ids);
    cJSON_Delete(cfg);
    cJSON_Delete(root);
    dsv3_tokenizer_free(t);
    return NULL;
}

dsv3_tokenizer *dsv3_tokenizer_load_json(const char *json, size_t len, const char *name) {
    return load_from_json(json, len, name ? name : "<tokenizer json>", NULL);
}

dsv3_tokenizer *dsv3_tokenizer_load(const char *path) {
    size_t len;
    char *text = dsv3_read_file_max(path, DSV3_TOKENIZER_MAX_BYTES, "a tokenizer.json", &len);
    if (!text) return NULL;
    // tokenizer_config.json next to tokenizer.json gives the BOS / EOS names
    char *dir = dsv3_strdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    size_t cl = strlen(dir) + sizeof "tokenizer_config.json";
    char *cfg = dsv3_malloc(cl);
    snprintf(cfg, cl, "%stokenizer_config.json", dir);
    dsv3_tokenizer *t = load_from_json(text, len, path, cfg);
    free(cfg);
    free(dir);
    free(text);
    return t;
}
