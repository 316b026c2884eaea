// Byte-level BPE trainer with DeepSeek-V3 pre-tokenization; writes an HF tokenizer.json with the
// same normalizer / pre_tokenizer / post_processor / decoder as DeepSeek-V3's (see docs/DATA.md).
//
// Algorithm (the one HF `tokenizers` BpeTrainer uses, reproduced step for step so that both give
// the same merges on the same word counts):
//   1. Count pre-token "words" (hash map: bytes -> count).
//   2. Vocab: ids 0,1,2 = BOS, EOS, PAD; then the 256 byte tokens ordered by the code point of their
//      GPT-2 ByteLevel character (so '!' is id 3, like DeepSeek-V3); merged tokens follow.
//   3. Count adjacent pairs over all words; a max-heap of (count, pair, word set) ordered by count,
//      ties broken by the smaller (left id, right id). Popped entries whose count is stale are pushed
//      back with the current count (lazy invalidation). The best pair is merged only in the words of
//      its word set; the pairs this creates get new heap entries with the words they appear in.
//   4. Stop when the vocab reaches vocab_size, the heap is empty, or the best count < max(1, min_frequency).
// The added tokens <｜fim▁hole｜>, <｜fim▁begin｜>, <｜fim▁end｜>, <｜User｜>, <｜Assistant｜> get the
// ids right after the model vocab (vocab_size .. vocab_size+4).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct dsv3_bpe_trainer dsv3_bpe_trainer;

typedef struct {
    int vocab_size;        // size of the BPE model vocab, ids 0..vocab_size-1 (3 specials + 256 bytes + merges)
    int64_t min_frequency; // merge only pairs seen at least this often (HF semantics; 0 and 1 mean any)
    int progress;          // 1: progress lines on stderr
} dsv3_bpe_train_opts;

#define DSV3_BPE_NUM_SPECIAL 3   // BOS, EOS, PAD at ids 0, 1, 2
#define DSV3_BPE_NUM_ADDED 5     // fim_hole, fim_begin, fim_end, User, Assistant after the model vocab

dsv3_bpe_trainer *dsv3_bpe_trainer_new(void);
void dsv3_bpe_trainer_free(dsv3_bpe_trainer *t);

// Pre-tokenize `text` (DeepSeek-V3 rules) and count its words. Returns 0 or -1.
int dsv3_bpe_trainer_feed(dsv3_bpe_trainer *t, const char *text, size_t len);
// Same for n texts, in parallel over `threads` OpenMP threads (<= 0: OpenMP default). The counts do
// not depend on the thread count.
int dsv3_bpe_trainer_feed_many(dsv3_bpe_trainer *t, const char *const *texts, const size_t *lens, size_t n,
                               int threads);
// Count `count` more occurrences of one already pre-tokenized word (raw bytes). For tests.
void dsv3_bpe_trainer_add_word(dsv3_bpe_trainer *t, const char *word, size_t len, int64_t count);
size_t dsv3_bpe_trainer_num_words(const dsv3_bpe_trainer *t); // distinct words counted so far

// Learn the merges. Returns 0, or -1 with dsv3_error() (bad options). Can be called once.
int dsv3_bpe_trainer_train(dsv3_bpe_trainer *t, const dsv3_bpe_train_opts *o);

// Results, valid after train.
int dsv3_bpe_trainer_num_tokens(const dsv3_bpe_trainer *t); // model vocab reached (<= vocab_size)
// Bytes of token `id` (for ids 0..2 the UTF-8 text of the special token). NULL if out of range.
const char *dsv3_bpe_trainer_token(const dsv3_bpe_trainer *t, int id, size_t *len);
int dsv3_bpe_trainer_num_merges(const dsv3_bpe_trainer *t);
// Merge i in learned order: left + right -> result (ids).
void dsv3_bpe_trainer_merge(const dsv3_bpe_trainer *t, int i, int32_t *left, int32_t *right, int32_t *result);
// Special / added token strings: index 0..2 BOS/EOS/PAD, 3..7 the added tokens (ids vocab+0..4).
const char *dsv3_bpe_special_token(int i);

// Write tokenizer.json atomically. Returns 0 or -1.
int dsv3_bpe_trainer_save(const dsv3_bpe_trainer *t, const char *path);
