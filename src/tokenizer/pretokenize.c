// Regex pre-tokenizer: HF `Split(pattern, behavior=Isolated)` steps run with Oniguruma, the regex
// library HF `tokenizers` itself uses (same version family as Debian's libonig 6.9.8), so Unicode
// classes (\p{L}, \p{N}, \s, ...) and lookahead behave identically. See docs/TOKENIZER.md.
#include "tokenizer/tokenizer_internal.h"
#include "core/error.h"
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char dsv3_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static pthread_once_t g_onig_once = PTHREAD_ONCE_INIT;
static int g_props_ok;
static void onig_init_once(void) {
    OnigEncoding encs[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encs, 1);
    g_props_ok = 1;
    for (int i = 0; i < DSV3_UNICODE_NPROPS; i++)
        if (onig_unicode_define_user_property(dsv3_unicode_props[i].onig_name, dsv3_unicode_props[i].ranges) != 0)
            g_props_ok = 0;
}

// HF tokenizers' Oniguruma has Unicode 16.0 tables, Debian's libonig Unicode 14.0. Rewrite the
// general-category escapes \p{X}, \P{X}, \p{^X} (X in L N P S M) to user properties holding the
// Unicode 16.0 sets (src/tokenizer/unicode_props.c), so code points assigned since 14.0 are
// classified as HF does. Escaped backslashes are skipped in pairs, so "\\p{L}" stays literal.
static char *rewrite_category_escapes(const char *pat, size_t len, size_t *out_len) {
    char *out = malloc(3 * len + 16), *o = out;
    if (!out) return NULL;
    size_t i = 0;
    while (i < len) {
        if (pat[i] == '\\' && i + 1 < len) {
            char c = pat[i + 1];
            if ((c == 'p' || c == 'P') && i + 2 < len && pat[i + 2] == '{') {
                size_t j = i + 3;
                int neg = j < len && pat[j] == '^';
                if (neg) j++;
                const char *cats = "LNPSM";
                const char *hit = j + 1 < len && pat[j + 1] == '}' && pat[j] ? strchr(cats, pat[j]) : NULL;
                if (hit) {
                    o += sprintf(o, "\\%c{%s%s}", c, neg ? "^" : "", dsv3_unicode_props[hit - cats].onig_name);
                    i = j + 2;
                    continue;
                }
            }
            *o++ = pat[i++];
            *o++ = pat[i++];
            continue;
        }
        *o++ = pat[i++];
    }
    *o = 0;
    *out_len = (size_t)(o - out);
    return out;
}

int dsv3_utf8_seq_len(const unsigned char *s, size_t len) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (len >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (len < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  // overlong
        if (c == 0xED && s[1] >= 0xA0) return 0; // surrogate
        return 3;
    }
    if (c < 0xF5) {
        if (len < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  // overlong
        if (c == 0xF4 && s[1] >= 0x90) return 0; // > U+10FFFF
        return 4;
    }
    return 0;
}

size_t dsv3_utf8_valid_prefix(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        // ASCII fast path, 8 bytes at a time
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        if (s[i] < 0x80) { i++; continue; }
        int k = dsv3_utf8_seq_len(s + i, len - i);
        if (!k) return i;
        i += (size_t)k;
    }
    return len;
}

int dsv3_pretok_add_step(dsv3_pretok *p, const char *pattern, size_t len, int literal) {
    pthread_once(&g_onig_once, onig_init_once);
    if (p->nsteps >= DSV3_PRETOK_MAX_STEPS)
        return dsv3_errorf("too many pre-tokenizer split steps (at most %d supported)", DSV3_PRETOK_MAX_STEPS);
    if (dsv3_utf8_valid_prefix((const unsigned char *)pattern, len) != len)
        return dsv3_errorf("split pattern is not valid UTF-8");
    char *buf = NULL;
    const char *pat = pattern;
    size_t plen = len;
    if (literal) {
        buf = calloc(2 * len + 1, 1);
        if (!buf) return dsv3_errorf("out of memory");
        plen = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)pattern[i];
            if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' '))
                buf[plen++] = '\\';
            buf[plen++] = (char)c;
        }
        pat = buf;
    }
    if (!g_props_ok) {
        free(buf);
        return dsv3_errorf("internal: cannot register the Unicode 16.0 category tables with Oniguruma");
    }
    size_t rlen;
    char *rw = rewrite_category_escapes(pat, plen, &rlen);
    if (!rw) {
        free(buf);
        return dsv3_errorf("out of memory");
    }
    OnigErrorInfo einfo;
    regex_t *re = NULL;
    int r = onig_new(&re, (const UChar *)rw, (const UChar *)rw + rlen, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                     ONIG_SYNTAX_ONIGURUMA, &einfo);
    free(rw);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        int shown = plen > 200 ? 200 : (int)plen;
        dsv3_errorf("cannot compile split pattern \"%.*s%s\": %s", shown, pat, plen > 200 ? "..." : "", msg);
        free(buf);
        return -1;
    }
    free(buf);
    p->re[p->nsteps++] = re;
    return 0;
}

void dsv3_pretok_free(dsv3_pretok *p) {
    for (int i = 0; i < p->nsteps; i++) onig_free(p->re[i]);
    p->nsteps = 0;
}

typedef struct {
    const dsv3_pretok *p;
    OnigRegion *region[DSV3_PRETOK_MAX_STEPS];
    dsv3_piece_fn fn;
    void *ctx;
    int err;
} run_state;

static void split_step(run_state *st, int step, const char *s, size_t len);

// Piece (s, len) enters `step`: apply the prefix space if configured there, then split or emit.
static void enter_step(run_state *st, int step, const char *s, size_t len) {
    if (len == 0 || st->err) return;
    if (st->p->prefix_space_at == step && s[0] != ' ') {
        char *tmp = malloc(len + 1);
        if (!tmp) { st->err = dsv3_errorf("out of memory"); return; }
        tmp[0] = ' ';
        memcpy(tmp + 1, s, len);
        if (step == st->p->nsteps) st->fn(tmp, len + 1, st->ctx);
        else split_step(st, step, tmp, len + 1);
        free(tmp);
        return;
    }
    if (step == st->p->nsteps) st->fn(s, len, st->ctx);
    else split_step(st, step, s, len);
}

// One Split(Isolated) step: matches and the non-empty gaps between them go, in order, to step+1.
// The iteration follows the onig crate's find_iter: an empty match right after the previous match
// is skipped by advancing one character.
static void split_step(run_state *st, int step, const char *s, size_t len) {
    regex_t *re = st->p->re[step];
    OnigRegion *rg = st->region[step];
    const UChar *str = (const UChar *)s, *end = str + len;
    size_t last_end = 0, prev = 0;
    long last_match_end = -1;
    while (last_end <= len) {
        onig_region_clear(rg);
        int r = onig_search(re, str, end, str + last_end, end, rg, ONIG_OPTION_NONE);
        if (r == ONIG_MISMATCH) break;
        if (r < 0) {
            UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
            onig_error_code_to_str(msg, r);
            st->err = dsv3_errorf("pre-tokenizer regex failed on a %zu-byte piece: %s", len, msg);
            return;
        }
        size_t ms = (size_t)rg->beg[0], me = (size_t)rg->end[0];
        if (ms == me && last_match_end == (long)me) {
            if (last_end >= len) break;
            int k = dsv3_utf8_seq_len(str + last_end, len - last_end);
            last_end += k ? (size_t)k : 1;
            continue;
        }
        last_end = me;
        last_match_end = (long)me;
        if (prev != ms) enter_step(st, step + 1, s + prev, ms - prev);
        enter_step(st, step + 1, s + ms, me - ms);
        prev = me;
        if (st->err) return;
    }
    if (prev != len) enter_step(st, step + 1, s + prev, len - prev);
}

int dsv3_pretok_run(const dsv3_pretok *p, const char *text, size_t len, dsv3_piece_fn fn, void *ctx) {
    if (len > (size_t)INT_MAX) // Oniguruma offsets are ints
        return dsv3_errorf("text of %zu bytes is too long to pre-tokenize in one call (limit %d)", len, INT_MAX);
    run_state st = {.p = p, .fn = fn, .ctx = ctx, .err = 0};
    for (int i = 0; i < p->nsteps; i++) st.region[i] = onig_region_new();
    const unsigned char *u = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && !st.err) {
        size_t v = dsv3_utf8_valid_prefix(u + i, len - i);
        if (v) enter_step(&st, 0, text + i, v);
        i += v;
        if (i < len && !st.err) { // one invalid byte: its own piece (see docs/TOKENIZER.md)
            fn(text + i, 1, ctx);
            i++;
        }
    }
    for (int k = 0; k < p->nsteps; k++) onig_region_free(st.region[k], 1);
    return st.err ? -1 : 0;
}

// DeepSeek-V3's three Split patterns, exactly as in its tokenizer.json (tests/test_tokenizer.c checks
// they still equal the ones in models/deepseek-v3/tokenizer.json). Hard-coded here only so that the
// BPE trainer can pre-tokenize without loading a tokenizer.
static const char *const g_ds3_patterns[3] = {
    "\\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};
static dsv3_pretok g_ds3;
static int g_ds3_ok;
static pthread_once_t g_ds3_once = PTHREAD_ONCE_INIT;
static void ds3_init(void) {
    g_ds3.prefix_space_at = -1;
    for (int i = 0; i < 3; i++)
        if (dsv3_pretok_add_step(&g_ds3, g_ds3_patterns[i], strlen(g_ds3_patterns[i]), 0)) return;
    g_ds3_ok = 1;
}

const char *dsv3_pretokenize_deepseek_v3_pattern(int i) { return (i >= 0 && i < 3) ? g_ds3_patterns[i] : NULL; }

int dsv3_pretokenize_deepseek_v3(const char *text, size_t len, dsv3_piece_fn fn, void *ctx) {
    pthread_once(&g_ds3_once, ds3_init);
    if (!g_ds3_ok) return dsv3_errorf("internal: DeepSeek-V3 pre-tokenizer patterns failed to compile");
    return dsv3_pretok_run(&g_ds3, text, len, fn, ctx);
}
