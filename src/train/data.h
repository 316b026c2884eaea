// Training data: documents -> tokens (+ FIM) -> packed rows -> binary shards + manifest, and the
// reader the trainer uses. Layouts and rules are in docs/DATA.md; in short:
//
//   documents  a .jsonl input gives one document per non-empty line (its string field "text");
//              any other file is one document (the whole file).
//   document   [BOS] body [EOS]; with probability fim_rate the body is FIM'd in PSM form:
//              <｜fim▁begin｜> prefix <｜fim▁hole｜> suffix <｜fim▁end｜> middle, cut at two uniformly
//              random character (code point) positions; the three parts are tokenized separately.
//   split      each document goes to val with probability val_fraction, else train (seeded).
//   rows       seq_len+1 tokens each (inputs = row[0..L), targets = row[1..L]); packing "bestfit"
//              (Ding et al. 2024, as in DeepSeek-V3): documents longer than L+1 are cut into L+1-token
//              chunks, chunks are packed best-fit-decreasing, the rest of a row is PAD (mask the
//              targets equal to pad_id); packing "concat": one stream cut into rows overlapping by one
//              token, no padding. No cross-document attention mask in either.
//   shard      64-byte header (magic "DSV3TOKS", version, vocab, seq_len, rows, tokens, pad id,
//              payload checksum, run id) + rows x (seq_len+1) little-endian uint32.
//   streaming  documents are read, tokenized and written shard by shard; the order is shuffled by a
//              bounded document shuffle buffer and by the order of shards in the manifest.
//   durable    shards of a run get names the previous manifest does not use (g<generation>-...);
//              the manifest, written last, publishes them atomically (core/durable.h).
#pragma once
#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// Documents

typedef struct { const char *text; size_t len; } dsv3_doc;

typedef struct {
    dsv3_doc *docs;  // (n)
    size_t n, cap;
    char **bufs;     // owned text buffers
    size_t nbufs, bufs_cap;
    size_t bytes;    // total text bytes
} dsv3_doclist;

// Append the documents of `path` (rules above). Returns 0, or -1 with dsv3_error() naming the
// file and line (see dsv3_jsonl_line_text for what a bad line is).
int dsv3_doclist_read(dsv3_doclist *dl, const char *path);
void dsv3_doclist_free(dsv3_doclist *dl);

// One JSONL line (without its '\n'): 1 with *obj (cJSON_Delete it) and *text/*len = its string
// field "text"; 0 for a blank line (spaces, tabs, CR only); -1 with dsv3_error() saying what is
// wrong (no file/line prefix: the caller adds it): not JSON, trailing bytes after the object, not
// an object with a string "text", or a \u0000 escape or raw NUL byte (cJSON would cut the text there).
typedef struct cJSON cJSON;
int dsv3_jsonl_line_text(const char *line, size_t len, cJSON **obj, const char **text, size_t *tlen);

// ---------------------------------------------------------------------------------------------
// Preparation (streaming: memory is bounded by a few shards whatever the corpus size)

typedef struct dsv3_tokenizer dsv3_tokenizer;

typedef struct {
    const char *tokenizer_path; // recorded in the manifest (with its SHA-256)
    const char *out_dir;        // created if missing; locked (DIR/.lock) while the run writes
    int seq_len;                // L: rows hold L+1 tokens
    double fim_rate;            // fraction of documents in PSM FIM form
    double val_fraction;        // fraction of documents in the validation split
    uint64_t seed;
    int add_bos;                // 1: every document starts with BOS
    int bestfit;                // 1: best-fit packing with PAD, 0: concatenate and cut
    uint64_t shard_rows;        // rows per shard file (last one shorter)
    int64_t shuffle_tokens;     // document shuffle buffer, in tokens; < 0: default (see DSV3_DATA_WINDOW_TOKENS)
    int threads;                // <= 0: OpenMP default
    int progress;               // progress lines on stderr
    size_t batch_bytes;         // text tokenized per parallel batch; 0: 4 MiB (the output does not depend on it)
} dsv3_data_prepare_opts;

// Best-fit packs windows of max(shard_rows x (L+1), DSV3_DATA_WINDOW_TOKENS) tokens; the default
// shuffle buffer holds as many.
#define DSV3_DATA_WINDOW_TOKENS (1ull << 22)

typedef struct {
    uint64_t documents[2], fim_documents[2]; // [0] train, [1] val
    uint64_t doc_tokens[2];                  // tokens of the documents (incl. BOS/EOS/FIM sentinels)
    uint64_t rows[2], pad_tokens[2], shards[2];
    uint64_t input_bytes;                    // text bytes of the documents
    uint64_t file_bytes;                     // bytes read from the input files
    uint64_t generation;                     // the dataset generation this run published
    char run_id[17];                         // 16 hex digits (see docs/DATA.md)
    double seconds_tokenize, seconds_total;
} dsv3_data_prepare_stats;

// Special ids the preparation uses (looked up by name in the tokenizer).
typedef struct { int32_t bos, eos, pad, fim_begin, fim_hole, fim_end; } dsv3_data_special_ids;
int dsv3_data_special_ids_get(const dsv3_tokenizer *tok, dsv3_data_special_ids *ids, int need_fim);

// One document -> tokens, FIM'd or not (`u_fim`, `u_cut1`, `u_cut2` in [0,1): the caller's random
// draws; FIM when u_fim < fim_rate). *out is malloc'd. Returns 0 or -1.
int dsv3_data_encode_document(const dsv3_tokenizer *tok, const dsv3_data_special_ids *ids, const char *text,
                              size_t len, int add_bos, double fim_rate, double u_fim, double u_cut1, double u_cut2,
                              int32_t **out, size_t *n, int *did_fim);

// The whole pipeline, streaming: the documents of `inputs` (rules above; "-" is stdin, one
// document) are read, tokenized in parallel batches and written shard by shard; the manifest is
// written last and replaces the previous one atomically (the previous dataset stays readable until
// then, and after any failure). Deterministic for a seed (independent of the thread count).
// Returns 0 or -1 with dsv3_error(): bad input (named with file:line), no documents or no rows,
// DIR in use by another writer ("in use by pid N"), or a write failure.
int dsv3_data_prepare_files(const dsv3_tokenizer *tok, const char *const *inputs, int n_inputs,
                            const dsv3_data_prepare_opts *opts, dsv3_data_prepare_stats *stats);
// The same for documents already in memory.
int dsv3_data_prepare(const dsv3_tokenizer *tok, const dsv3_doclist *docs, const dsv3_data_prepare_opts *opts,
                      dsv3_data_prepare_stats *stats);

// Deterministic per-document random numbers: uniform double in [0,1) for (seed, doc, draw).
double dsv3_data_uniform(uint64_t seed, uint64_t doc, uint64_t draw);

// ---------------------------------------------------------------------------------------------
// Shards

#define DSV3_SHARD_MAGIC "DSV3TOKS"
#define DSV3_SHARD_VERSION 2u
#define DSV3_SHARD_HEADER_BYTES 64
#define DSV3_MANIFEST_VERSION 2

typedef struct {
    uint32_t version, header_bytes, vocab_size, seq_len;
    uint64_t rows, tokens;   // tokens = rows * (seq_len + 1)
    uint32_t pad_id;         // 0xFFFFFFFF when the shard has no padding
    uint64_t checksum;       // FNV-1a 64 of the payload bytes
    uint64_t run_id;         // the run that wrote it (the manifest's "run_id")
} dsv3_shard_header;

// Write a shard durably (core/durable.h). rows x (seq_len+1) tokens. *checksum / *sample (may be
// NULL) get the payload FNV-1a 64 and the sampled checksum. Returns 0 or -1.
int dsv3_shard_write(const char *path, const uint32_t *tokens, uint64_t rows, uint32_t seq_len, uint32_t vocab_size,
                     uint32_t pad_id, uint64_t run_id, uint64_t *checksum, uint64_t *sample);
// Parse and validate a header against the file size (bad magic, version, truncation, sizes).
int dsv3_shard_parse_header(const unsigned char *data, size_t size, const char *path, dsv3_shard_header *h);
uint64_t dsv3_fnv1a64(const void *data, size_t n);
// The cheap checksum the reader checks by default: FNV-1a 64 over the 64-byte header and 16 blocks
// of 4 KiB spread evenly over the payload (the whole payload when it is at most 64 KiB).
uint64_t dsv3_shard_sample_checksum(const unsigned char *header, const unsigned char *payload, size_t payload_bytes);

// ---------------------------------------------------------------------------------------------
// Reader (for training)

typedef struct dsv3_data dsv3_data;

// Open one split ("train" or "val") of a prepared dataset: `path` is its manifest.json or its
// folder. Every shard is checked against the manifest: file size, header (vocab, seq_len, rows, pad
// id), run id (a shard of another run is refused, named), the payload checksum recorded in the
// header, and a sampled checksum of its bytes (64 KiB read per shard). verify=1 also checks the full
// payload checksum and that every id is < vocab size (reads everything once). NULL + dsv3_error()
// naming the file on any problem. A manifest replaced while it is being opened is re-read.
dsv3_data *dsv3_data_open(const char *path, const char *split, int verify);
void dsv3_data_close(dsv3_data *d);
uint64_t dsv3_data_num_rows(const dsv3_data *d);
int dsv3_data_seq_len(const dsv3_data *d);     // L; a row has L+1 tokens
int dsv3_data_vocab_size(const dsv3_data *d);
int64_t dsv3_data_pad_id(const dsv3_data *d);  // -1 when there is no padding
int dsv3_data_num_shards(const dsv3_data *d);
const char *dsv3_data_run_id(const dsv3_data *d);  // 16 hex digits
uint64_t dsv3_data_generation(const dsv3_data *d);
// FNV-1a 64 over the run id and each shard's (rows, payload checksum) in manifest order: equal
// digests mean the same rows in the same order (with verify=1 the checksums were recomputed).
uint64_t dsv3_data_digest(const dsv3_data *d);
// Row i (0 <= i < num_rows): L+1 tokens, pointing into the mapped shard (valid until close).
const uint32_t *dsv3_data_row(const dsv3_data *d, uint64_t i);

// The rows rank `rank` of `world` reads in epoch `epoch`: a permutation of all rows seeded by
// (seed, epoch), identical on every rank, dealt round-robin (rank r takes positions r, r+w, ...).
// drop_remainder=1 gives every rank floor(n/w) rows (the last n%w of the permutation are skipped
// this epoch); 0 gives the first n%w ranks one more. *rows is malloc'd. Returns 0 or -1.
int dsv3_data_epoch_rows(uint64_t n_rows, uint64_t seed, uint64_t epoch, int rank, int world, int drop_remainder,
                         uint64_t **rows, uint64_t *n);

// SHA-256 of a file as 64 hex chars + NUL. Returns 0 or -1.
int dsv3_sha256_file(const char *path, char hex[65]);
