// Small text helpers shared by the tokenizer, the BPE trainer and the data pipeline.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// 64-bit hash of a byte string (multiply-xorshift over 8-byte words); good spread for hash tables.
static inline uint64_t dsv3_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    if (n) memcpy(&w, s, n);
    h = (h ^ w ^ n) * 0x94d049bb133111ebull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

// 1 if raw JSON text contains a \u0000 escape (an even number of backslashes before "\u0000").
// cJSON strings are NUL-terminated, so such a string would be silently cut: callers reject it.
static inline int dsv3_json_has_nul_escape(const char *s, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++) {
        if (s[i] != '\\' || memcmp(s + i + 1, "u0000", 5) != 0) continue;
        size_t k = 0;
        while (k < i && s[i - 1 - k] == '\\') k++;
        if (k % 2 == 0) return 1;
    }
    return 0;
}
