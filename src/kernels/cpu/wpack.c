// The packed-weight cache (wpack.h): a list of weight regions with a version each, and a table of
// packs keyed by (address, kind, shape, stride) recording the region version they were made from.
#include "kernels/cpu/wpack.h"
#include "core/error.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *base;
    size_t bytes;
    unsigned long version;
} region;

enum { SEEN = 0, BUILDING = 1, READY = 2 };

typedef struct {
    dsv3_wpack_key key;
    unsigned long version;  // region version of `state`
    int state;              // SEEN (used once, no pack), BUILDING, READY
    void *pack;
    size_t bytes;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static region *regs;
static int nregs, capregs;
static entry *ents;
static int nents, capents;
static int *hidx; // open addressing over ents (index + 1; 0 empty), capacity hcap (a power of two, > 2 nents)
static int hcap;
static size_t held;
static long long budget = -2; // -2: not read yet; -1: use the environment
static dsv3_wpack_stats stats;
static unsigned long version_counter;

static void rehash(int cap);

static size_t get_budget(void) {
    if (budget == -2 || budget == -1) {
        const char *e = getenv("DSV3_WPACK_MB");
        long long mb = 2048;
        if (e && *e) {
            char *end;
            long long v = strtoll(e, &end, 10);
            if (*end == 0 && v >= 0) mb = v;
        }
        budget = -1;
        return (size_t)mb << 20;
    }
    return (size_t)budget;
}

void dsv3_wpack_set_budget(long long bytes) {
    pthread_mutex_lock(&mu);
    budget = bytes < 0 ? -1 : bytes;
    pthread_mutex_unlock(&mu);
}

static int find_region(const void *base) {
    for (int i = 0; i < nregs; i++)
        if (regs[i].base == base) return i;
    return -1;
}

void dsv3_wpack_region(const void *base, size_t bytes) {
    pthread_mutex_lock(&mu);
    int i = find_region(base);
    if (i < 0) {
        if (nregs == capregs) {
            capregs = capregs ? 2 * capregs : 8;
            regs = realloc(regs, sizeof *regs * capregs);
            if (!regs) dsv3_panic(__FILE__, __LINE__, "wpack: out of memory");
        }
        i = nregs++;
        regs[i].base = base;
    }
    regs[i].bytes = bytes;
    regs[i].version = ++version_counter; // unique across regions, so a reused base never matches an old pack
    pthread_mutex_unlock(&mu);
}

void dsv3_wpack_forget(const void *base) {
    pthread_mutex_lock(&mu);
    int i = find_region(base);
    if (i >= 0) {
        const char *b = regs[i].base, *e = b + regs[i].bytes;
        int w = 0;
        for (int j = 0; j < nents; j++) {
            const char *p = ents[j].key.ptr;
            if (p >= b && p < e) { held -= ents[j].bytes; free(ents[j].pack); }
            else ents[w++] = ents[j];
        }
        nents = w;
        if (hcap) rehash(hcap);
        regs[i] = regs[--nregs];
    }
    pthread_mutex_unlock(&mu);
}

static int same_key(const dsv3_wpack_key *a, const dsv3_wpack_key *b) {
    return a->ptr == b->ptr && a->kind == b->kind && a->n == b->n && a->k == b->k && a->ld == b->ld;
}

static unsigned hash_key(const dsv3_wpack_key *k) {
    uint64_t h = (uint64_t)(uintptr_t)k->ptr * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)k->kind << 48) ^ ((uint64_t)(uint32_t)k->n << 24) ^ (uint64_t)(uint32_t)k->k ^ ((uint64_t)k->ld << 8);
    h *= 0xBF58476D1CE4E5B9ull;
    return (unsigned)(h >> 32);
}

static void rehash(int cap) {
    free(hidx);
    hcap = cap;
    hidx = calloc((size_t)hcap, sizeof *hidx);
    if (!hidx) dsv3_panic(__FILE__, __LINE__, "wpack: out of memory");
    for (int j = 0; j < nents; j++) {
        unsigned h = hash_key(&ents[j].key) & (hcap - 1);
        while (hidx[h]) h = (h + 1) & (hcap - 1);
        hidx[h] = j + 1;
    }
}

static entry *lookup(const dsv3_wpack_key *key) {
    if (!hcap) return NULL;
    for (unsigned h = hash_key(key) & (hcap - 1); hidx[h]; h = (h + 1) & (hcap - 1))
        if (same_key(&ents[hidx[h] - 1].key, key)) return &ents[hidx[h] - 1];
    return NULL;
}

void *dsv3_wpack_get(const dsv3_wpack_key *key, size_t bytes, int *build) {
    *build = 0;
    void *out = NULL;
    pthread_mutex_lock(&mu);
    const char *p = key->ptr;
    int r = -1;
    for (int i = 0; i < nregs; i++)
        if (p >= regs[i].base && p < regs[i].base + regs[i].bytes) { r = i; break; }
    if (r < 0) goto done;
    unsigned long ver = regs[r].version;
    entry *e = lookup(key);
    if (!e) { // first use: remember it, pack per call
        if (nents == capents) {
            capents = capents ? 2 * capents : 64;
            ents = realloc(ents, sizeof *ents * capents);
            if (!ents) dsv3_panic(__FILE__, __LINE__, "wpack: out of memory");
        }
        e = &ents[nents++];
        memset(e, 0, sizeof *e);
        e->key = *key;
        if (2 * nents >= hcap) rehash(hcap ? 2 * hcap : 128);
        else {
            unsigned h = hash_key(key) & (hcap - 1);
            while (hidx[h]) h = (h + 1) & (hcap - 1);
            hidx[h] = nents;
        }
        e->version = ver;
        e->state = SEEN;
        stats.misses++;
        goto done;
    }
    if (e->version != ver) { // stale: this is the first use of the new version
        e->version = ver;
        e->state = SEEN;
        stats.misses++;
        goto done;
    }
    if (e->state == READY) { out = e->pack; stats.hits++; goto done; }
    if (e->state == BUILDING) { stats.misses++; goto done; }
    // SEEN in this version: second use, cache it (reusing the buffer of an older version if it fits)
    if (e->bytes != bytes) {
        if (held - e->bytes + bytes > get_budget()) { stats.misses++; goto done; }
        free(e->pack);
        held -= e->bytes;
        e->pack = dsv3_alloc_pages(bytes);
        e->bytes = e->pack ? bytes : 0;
        held += e->bytes;
        if (!e->pack) { stats.misses++; goto done; }
    }
    e->state = BUILDING;
    stats.builds++;
    *build = 1;
    out = e->pack;
done:
    pthread_mutex_unlock(&mu);
    return out;
}

void dsv3_wpack_done(void *pack) {
    pthread_mutex_lock(&mu);
    for (int j = 0; j < nents; j++)
        if (ents[j].pack == pack && ents[j].state == BUILDING) { ents[j].state = READY; break; }
    pthread_mutex_unlock(&mu);
}

dsv3_wpack_stats dsv3_wpack_get_stats(void) {
    pthread_mutex_lock(&mu);
    dsv3_wpack_stats s = stats;
    s.bytes = held;
    pthread_mutex_unlock(&mu);
    return s;
}

void dsv3_wpack_reset_stats(void) {
    pthread_mutex_lock(&mu);
    memset(&stats, 0, sizeof stats);
    pthread_mutex_unlock(&mu);
}
