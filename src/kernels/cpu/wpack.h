// Packed weight operands, kept across GEMM calls: "once per weight version" (issue 12, item 1).
//
// A GEMM packs its B operand (a weight) into the layout its micro-kernel reads (bgemm.c: bf16 VNNI
// panels). Packing on every call costs a pass over the weight per call; for a weight that is used
// several times while it does not change (the lm head over row chunks, the head shared by the MTP
// module, micro-batches, every prefill of a loaded model) the packed copy is kept here instead.
//
// Owners say which memory holds weights and when it changes:
//   dsv3_wpack_region(base, bytes)  [base, base + bytes) holds weights, and this is a new version of
//                                   them: packs made from it before are stale (re-made on next use).
//                                   A trainer calls it when a step starts on new weights, a loaded
//                                   model once (its mapping is read-only).
//   dsv3_wpack_forget(base)         the region is gone (freed): its packs are freed.
// Memory outside every region is never cached (a caller's scratch may hold other values next call).
//
// Policy: a pack is cached on its second use within one version (a weight used once per version,
// most weights of a one-micro-batch training step, would only pay a DRAM round trip for a copy
// nobody reads again); later uses read it. Packs of all versions together stay under a budget:
// DSV3_WPACK_MB (MiB, default 2048; 0 turns the cache off). Past it, GEMMs pack per call as before.
// Thread-safe (one mutex around the table; packing happens outside it).
#pragma once
#include <stddef.h>
#include <stdint.h>

void dsv3_wpack_region(const void *base, size_t bytes);
void dsv3_wpack_forget(const void *base);

// What identifies one packed form of one weight: its address, the GEMM's view of it (kind: a
// caller-chosen code for the layout and transpose), its logical shape and row stride.
typedef struct {
    const void *ptr;
    int kind;
    int n, k;
    long ld;
} dsv3_wpack_key;

// Look up `key` (a pack of `bytes`). Returns NULL when the operand is not cacheable now (outside every
// region, first use in this version, over budget, or being packed by another thread): the caller
// packs per call. Otherwise returns the pack: *build = 1 means it must be filled first (then
// dsv3_wpack_done), 0 that it is ready to read.
void *dsv3_wpack_get(const dsv3_wpack_key *key, size_t bytes, int *build);
void dsv3_wpack_done(void *pack);

// Counters since the start (or the last reset): lookups that read a ready pack, packs built, bytes
// held now.
typedef struct { long hits, builds, misses; size_t bytes; } dsv3_wpack_stats;
dsv3_wpack_stats dsv3_wpack_get_stats(void);
void dsv3_wpack_reset_stats(void);
// Budget override (bytes; < 0: back to DSV3_WPACK_MB / the default). For tests and the bench.
void dsv3_wpack_set_budget(long long bytes);
