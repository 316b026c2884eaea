// Byte-level BPE tokenizer that reads HF `tokenizer.json` and reproduces HF `tokenizers` exactly
// (DeepSeek-V3's Split-sequence pre-tokenizer and GPT-2-style ByteLevel(use_regex=true)).
// See docs/TOKENIZER.md for the supported subset and how invalid UTF-8 is handled.
//
// Thread safety: a loaded dsv3_tokenizer is read-only after load; the BPE cache is per thread
// (thread-local, keyed by tokenizer), so encode/decode may be called from several threads at once.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct dsv3_tokenizer dsv3_tokenizer;

// Load an HF tokenizer.json. NULL + dsv3_error() (naming the file and problem) on failure,
// including unsupported model / pre-tokenizer / normalizer / decoder types.
dsv3_tokenizer *dsv3_tokenizer_load(const char *path);
// Same, from an in-memory JSON document (`name` is used in error messages). Used by the fuzzer.
dsv3_tokenizer *dsv3_tokenizer_load_json(const char *json, size_t len, const char *name);
void dsv3_tokenizer_free(dsv3_tokenizer *t);

// Encode `len` bytes (any bytes; invalid UTF-8 still round-trips through decode). add_bos prepends
// the BOS id (error if the tokenizer has none). *ids is malloc'd (free() it), *n its length.
// Returns 0, or -1 with dsv3_error().
int dsv3_tokenizer_encode(const dsv3_tokenizer *t, const char *text, size_t len, int add_bos, int32_t **ids,
                          size_t *n);

// Decode to bytes: malloc'd, NUL-terminated, *len = byte count (may be NULL). skip_special drops
// added tokens with special=true. Byte sequences that are not valid UTF-8 are kept as raw bytes
// (HF replaces them with U+FFFD; see dsv3_tokenizer_decode_lossy). NULL + dsv3_error() on an id
// out of range.
char *dsv3_tokenizer_decode(const dsv3_tokenizer *t, const int32_t *ids, size_t n, int skip_special, size_t *len);
// Like decode, but invalid UTF-8 is replaced by U+FFFD exactly as HF `tokenizers` decode does.
char *dsv3_tokenizer_decode_lossy(const dsv3_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                                  size_t *len);

int dsv3_tokenizer_vocab_size(const dsv3_tokenizer *t);                     // max id + 1 incl. added tokens
int dsv3_tokenizer_token_to_id(const dsv3_tokenizer *t, const char *token); // -1 if absent
// The token's string as stored in tokenizer.json (byte-level form for BPE tokens), NULL if no such id.
const char *dsv3_tokenizer_id_to_token(const dsv3_tokenizer *t, int id);
// 1 if `id` is an added token with special=true.
int dsv3_tokenizer_is_special(const dsv3_tokenizer *t, int id);
// BOS/EOS ids: from tokenizer_config.json next to tokenizer.json when present, else the
// DeepSeek-V3 names <｜begin▁of▁sentence｜> / <｜end▁of▁sentence｜>; -1 if unknown.
// (dsv3_tokenizer_load_json never reads a config file.)
int dsv3_tokenizer_bos_id(const dsv3_tokenizer *t);
int dsv3_tokenizer_eos_id(const dsv3_tokenizer *t);

// The DeepSeek-V3 pre-tokenizer (the three Split steps, no added-token handling, no ByteLevel
// mapping): calls fn for each piece of `text` in order; the pieces concatenate to `text`.
// Invalid UTF-8 bytes come out as single-byte pieces. Used by the BPE trainer. Returns 0 or -1.
typedef void (*dsv3_piece_fn)(const char *piece, size_t len, void *ctx);
int dsv3_pretokenize_deepseek_v3(const char *text, size_t len, dsv3_piece_fn fn, void *ctx);
// Pattern i (0..2) of the DeepSeek-V3 Split steps used above (NULL otherwise).
const char *dsv3_pretokenize_deepseek_v3_pattern(int i);
// The pre-tokenizer of a loaded tokenizer (whatever tokenizer.json says), same contract.
int dsv3_tokenizer_pretokenize(const dsv3_tokenizer *t, const char *text, size_t len, dsv3_piece_fn fn, void *ctx);

// Length of the valid UTF-8 sequence starting at s[0] (1..4; Rust/Unicode rules: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 if s[0] does not start one. len >= 1 bytes available.
int dsv3_utf8_seq_len(const unsigned char *s, size_t len);

// GPT-2 byte-level alphabet: byte -> UTF-8 string of its mapped code point (<= 2 bytes + NUL).
const char *dsv3_byte_to_unicode(unsigned char b);
// Inverse: decode one mapped code point at s (UTF-8, `len` bytes available). Returns the byte
// value 0..255 and sets *used to the bytes consumed, or -1 if s does not start with a mapped char.
int dsv3_unicode_to_byte(const char *s, size_t len, size_t *used);
