// Internals shared by the tokenizer source files (not part of the public API).
#pragma once
#include "tokenizer/tokenizer.h"
#include <oniguruma.h>

#define DSV3_PRETOK_MAX_STEPS 8

// A pre-tokenizer: a chain of regex Split(behavior=Isolated, invert=false) steps, each re-splitting
// the pieces of the previous one. ByteLevel(use_regex=true) contributes the GPT-2 regex as a step.
typedef struct {
    int nsteps;
    regex_t *re[DSV3_PRETOK_MAX_STEPS];
    int prefix_space_at; // ByteLevel add_prefix_space: prepend ' ' to pieces entering this step (-1: never)
} dsv3_pretok;

// The GPT-2 pattern that HF ByteLevel(use_regex=true) applies (it is not stored in tokenizer.json).
extern const char dsv3_gpt2_pattern[];

// Compile one pattern (Oniguruma, ONIG_SYNTAX_ONIGURUMA = the onig crate default, UTF-8). `literal` escapes
// it first (Split pattern {"String": ...}). Returns 0 or -1 with dsv3_error().
int dsv3_pretok_add_step(dsv3_pretok *p, const char *pattern, size_t len, int literal);
void dsv3_pretok_free(dsv3_pretok *p);
// Split `text` into pieces (see dsv3_pretokenize_deepseek_v3 for the contract).
int dsv3_pretok_run(const dsv3_pretok *p, const char *text, size_t len, dsv3_piece_fn fn, void *ctx);
// Length of the longest prefix of s that is valid UTF-8 (Rust/Unicode rules: no overlongs, no
// surrogates, nothing above U+10FFFF).
size_t dsv3_utf8_valid_prefix(const unsigned char *s, size_t len);
// dsv3_utf8_seq_len is declared in tokenizer.h (the data pipeline uses it too).

// Unicode 16.0 general categories (src/tokenizer/unicode_props.c, generated), registered as
// Oniguruma user properties: \p{L} in a pattern is compiled as \p{Dsv3CatL}, etc.
#define DSV3_UNICODE_NPROPS 5
typedef struct {
    const char *category; // "L", "N", "P", "S", "M"
    const char *onig_name;
    OnigCodePoint *ranges;
} dsv3_unicode_prop;
extern const dsv3_unicode_prop dsv3_unicode_props[DSV3_UNICODE_NPROPS];
