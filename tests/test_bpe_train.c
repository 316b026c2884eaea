// BPE trainer: merge sequences computed by hand on tiny word counts (HF BpeTrainer rules: most
// frequent pair, ties -> smaller (left id, right id); counts updated exactly as HF's Word::merge),
// then an end-to-end train -> tokenizer.json -> dsv3_tokenizer_load -> encode/decode round trip.
// tools/ref/check_bpe_trained.py checks the same trainer against HF tokenizers on the real corpus.
#include "test.h"
#include "core/error.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tokenizer.h"
#include <stdint.h>
#include <unistd.h>

// Ids: 0..2 specials; bytes 33..126 are ids 3..96 ('!' = 3, 'a' = 67); merges from 259.
#define ID(c) ((int32_t)(c) - 30)

static int merges_are(dsv3_bpe_trainer *t, int n, const int32_t (*want)[3]) {
    if (dsv3_bpe_trainer_num_merges(t) != n) {
        fprintf(stderr, "  got %d merges, want %d\n", dsv3_bpe_trainer_num_merges(t), n);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        int32_t l, r, res;
        dsv3_bpe_trainer_merge(t, i, &l, &r, &res);
        if (l != want[i][0] || r != want[i][1] || res != want[i][2]) {
            fprintf(stderr, "  merge %d: got (%d,%d)->%d, want (%d,%d)->%d\n", i, l, r, res, want[i][0], want[i][1],
                    want[i][2]);
            return 0;
        }
    }
    return 1;
}

static dsv3_bpe_trainer *train_words(const char **w, const int64_t *c, int n, int vocab, int64_t minf) {
    dsv3_bpe_trainer *t = dsv3_bpe_trainer_new();
    for (int i = 0; i < n; i++) dsv3_bpe_trainer_add_word(t, w[i], strlen(w[i]), c[i]);
    dsv3_bpe_train_opts o = {.vocab_size = vocab, .min_frequency = minf};
    CHECK(dsv3_bpe_trainer_train(t, &o) == 0, "train: %s", dsv3_error());
    return t;
}

static void test_hand_merges(void) {
    // "aab" x3, "ab" x2, "bc" x4. Pairs: (a,a) 3, (a,b) 5, (b,c) 4.
    //  1. (a,b) 5 -> "ab" (259). "aab" = [a, ab]: (a,a) -3 -> 0, (a,ab) +3.
    //  2. (b,c) 4 -> "bc" (260).
    //  3. (a,ab) 3 -> "aab" (261). Nothing with count >= 1 is left.
    const char *w[] = {"aab", "ab", "bc"};
    const int64_t c[] = {3, 2, 4};
    const int32_t want[][3] = {{ID('a'), ID('b'), 259}, {ID('b'), ID('c'), 260}, {ID('a'), 259, 261}};
    dsv3_bpe_trainer *t = train_words(w, c, 3, 1000, 0);
    CHECK(merges_are(t, 3, want), "hand merges aab/ab/bc");
    CHECK(dsv3_bpe_trainer_num_tokens(t) == 262, "tokens %d, want 3 + 256 + 3", dsv3_bpe_trainer_num_tokens(t));
    size_t len;
    const char *s = dsv3_bpe_trainer_token(t, 261, &len);
    CHECK(s && len == 3 && memcmp(s, "aab", 3) == 0, "token 261 is 'aab'");
    s = dsv3_bpe_trainer_token(t, ID('!'), &len);
    CHECK(s && len == 1 && s[0] == '!', "'!' is id 3 (byte tokens ordered by ByteLevel code point)");
    s = dsv3_bpe_trainer_token(t, 3 + 94 + 67, &len); // after 94 printable ASCII + 12 (161..172) + 82 (174..255) = 188
    CHECK(s && len == 1, "byte token exists");
    dsv3_bpe_trainer_free(t);

    // vocab_size stops early: 260 = one merge.
    t = train_words(w, c, 3, 260, 0);
    CHECK(merges_are(t, 1, want), "vocab-size 260 -> only the first merge");
    dsv3_bpe_trainer_free(t);
    // min_frequency 4: (a,ab) has 3 < 4, so it stops after two merges.
    t = train_words(w, c, 3, 1000, 4);
    CHECK(merges_are(t, 2, want), "min-frequency 4 -> two merges");
    dsv3_bpe_trainer_free(t);
    // min_frequency 6: (a,b) has 5 -> nothing merged.
    t = train_words(w, c, 3, 1000, 6);
    CHECK(dsv3_bpe_trainer_num_merges(t) == 0 && dsv3_bpe_trainer_num_tokens(t) == 259, "min-frequency 6 -> none");
    dsv3_bpe_trainer_free(t);
}

static void test_tie_break(void) {
    // "xy" x2 and "ab" x2: both pairs count 2; the smaller (left, right) = (a,b) goes first.
    const char *w[] = {"xy", "ab"};
    const int64_t c[] = {2, 2};
    const int32_t want[][3] = {{ID('a'), ID('b'), 259}, {ID('x'), ID('y'), 260}};
    dsv3_bpe_trainer *t = train_words(w, c, 2, 1000, 0);
    CHECK(merges_are(t, 2, want), "tie-break by smaller pair ids");
    dsv3_bpe_trainer_free(t);
    // Same count, same left id: smaller right id first: "ba" x1, "bc" x1 -> (b,a) before (b,c).
    const char *w2[] = {"bc", "ba"};
    const int64_t c2[] = {1, 1};
    const int32_t want2[][3] = {{ID('b'), ID('a'), 259}, {ID('b'), ID('c'), 260}};
    t = train_words(w2, c2, 2, 1000, 0);
    CHECK(merges_are(t, 2, want2), "tie-break by right id");
    dsv3_bpe_trainer_free(t);
}

static void test_overlaps(void) {
    // "aaa" x1: windows (a,a) x2. Merge -> [aa, a] (left to right, non-overlapping):
    // (a,a) -1 for the destroyed second window, (aa,a) +1. Then (aa,a) -> "aaa".
    const char *w[] = {"aaa"};
    const int64_t c[] = {1};
    const int32_t want[][3] = {{ID('a'), ID('a'), 259}, {259, ID('a'), 260}};
    dsv3_bpe_trainer *t = train_words(w, c, 1, 1000, 0);
    CHECK(merges_are(t, 2, want), "aaa");
    dsv3_bpe_trainer_free(t);
    // "aaaa" x1 -> [aa, aa]; (aa,a) is created then destroyed (net 0), (aa,aa) 1 -> "aaaa".
    const char *w2[] = {"aaaa"};
    const int32_t want2[][3] = {{ID('a'), ID('a'), 259}, {259, 259, 260}};
    t = train_words(w2, c, 1, 1000, 0);
    CHECK(merges_are(t, 2, want2), "aaaa");
    dsv3_bpe_trainer_free(t);
    // Stale heap entries: "abc" x3, "xbc" x2, "ab" x2.
    //   pairs: (a,b) 3+2 = 5, (b,c) 3+2 = 5, (x,b) 2. Tie (a,b)=(b,c)=5 -> (a,b) first (a < b).
    //   1. "ab" 259: "abc" = [ab, c]: (b,c) -3 -> 2, (ab,c) +3; "ab" = [ab].
    //   2. (ab,c) 3 -> "abc" 260.
    //   3. (b,c) 2 and (x,b) 2 tie -> (b,c) first (b < x) -> "bc" 261: "xbc" = [x, bc]: (x,b) -2, (x,bc) +2.
    //   4. (x,bc) 2 -> "xbc" 262.
    const char *w3[] = {"abc", "xbc", "ab"};
    const int64_t c3[] = {3, 2, 2};
    const int32_t want3[][3] = {{ID('a'), ID('b'), 259}, {259, ID('c'), 260}, {ID('b'), ID('c'), 261},
                                {ID('x'), 261, 262}};
    t = train_words(w3, c3, 3, 1000, 0);
    CHECK(merges_are(t, 4, want3), "abc/xbc/ab");
    dsv3_bpe_trainer_free(t);
}

static void test_roundtrip(void) {
    const char *text =
        "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs!\n"
        "Numbers 12345 and 2024-11-28, symbols (a+b)*c = d.\n\nAnother paragraph: the fox, the dog.\n"
        "Unicode: caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80.\n";
    const char *docs[4] = {text, text, "the the the fox fox dog", "quick brown quick brown"};
    size_t lens[4];
    for (int i = 0; i < 4; i++) lens[i] = strlen(docs[i]);
    int32_t first[64][3];
    int nfirst = 0;
    for (int threads = 1; threads <= 2; threads++) {
        dsv3_bpe_trainer *t = dsv3_bpe_trainer_new();
        CHECK(dsv3_bpe_trainer_feed_many(t, docs, lens, 4, threads) == 0, "feed: %s", dsv3_error());
        dsv3_bpe_train_opts o = {.vocab_size = 300};
        CHECK(dsv3_bpe_trainer_train(t, &o) == 0, "train");
        CHECK(dsv3_bpe_trainer_num_tokens(t) == 300, "300 tokens, got %d", dsv3_bpe_trainer_num_tokens(t));
        // Pre-token boundaries: words start at a space or not at all, so a space is only ever a
        // token's first byte (this text has no runs of spaces).
        int bad = 0;
        for (int id = 3; id < dsv3_bpe_trainer_num_tokens(t); id++) {
            size_t len;
            const char *s = dsv3_bpe_trainer_token(t, id, &len);
            for (size_t k = 1; k < len; k++) bad += s[k] == ' ';
        }
        CHECK(bad == 0, "no token has a space after its first byte (%d)", bad);
        // Each merge result is the concatenation of its parts.
        int nm = dsv3_bpe_trainer_num_merges(t), badcat = 0;
        for (int i = 0; i < nm; i++) {
            int32_t l, r, res;
            dsv3_bpe_trainer_merge(t, i, &l, &r, &res);
            size_t a, b, c;
            const char *sa = dsv3_bpe_trainer_token(t, l, &a), *sb = dsv3_bpe_trainer_token(t, r, &b),
                       *sc = dsv3_bpe_trainer_token(t, res, &c);
            badcat += !(c == a + b && memcmp(sc, sa, a) == 0 && memcmp(sc + a, sb, b) == 0);
            if (threads == 1 && i < 64) {
                first[i][0] = l, first[i][1] = r, first[i][2] = res;
                nfirst = i + 1;
            } else if (i < nfirst) {
                badcat += first[i][0] != l || first[i][1] != r || first[i][2] != res;
            }
        }
        CHECK(badcat == 0, "merges concatenate their parts and do not depend on threads (%d bad)", badcat);

        char path[] = "/tmp/dsv3_test_bpe_XXXXXX";
        int fd = mkstemp(path);
        close(fd);
        CHECK(dsv3_bpe_trainer_save(t, path) == 0, "save: %s", dsv3_error());
        dsv3_tokenizer *tok = dsv3_tokenizer_load(path);
        CHECK(tok != NULL, "load trained tokenizer.json: %s", dsv3_error());
        if (tok) {
            CHECK(dsv3_tokenizer_vocab_size(tok) == 305, "vocab incl. added = 305, got %d", dsv3_tokenizer_vocab_size(tok));
            CHECK(dsv3_tokenizer_bos_id(tok) == 0 && dsv3_tokenizer_eos_id(tok) == 1, "BOS 0, EOS 1");
            CHECK(dsv3_tokenizer_token_to_id(tok, dsv3_bpe_special_token(2)) == 2, "PAD 2");
            CHECK(dsv3_tokenizer_token_to_id(tok, dsv3_bpe_special_token(3)) == 300, "fim_hole 300");
            CHECK(dsv3_tokenizer_token_to_id(tok, dsv3_bpe_special_token(4)) == 301, "fim_begin 301");
            CHECK(dsv3_tokenizer_token_to_id(tok, dsv3_bpe_special_token(5)) == 302, "fim_end 302");
            CHECK(dsv3_tokenizer_token_to_id(tok, dsv3_bpe_special_token(7)) == 304, "Assistant 304");
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK(dsv3_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n) == 0, "encode");
            CHECK(n > 0 && n < strlen(text) * 3 / 4, "trained merges compress the training text (%zu tokens for %zu bytes)",
                  n, strlen(text));
            size_t dl = 0;
            char *back = dsv3_tokenizer_decode(tok, ids, n, 0, &dl);
            CHECK(back && dl == strlen(text) && memcmp(back, text, dl) == 0, "decode(encode(text)) == text");
            free(back);
            free(ids);
            // "the" was merged (frequent) and encodes as one token with a leading space variant.
            CHECK(dsv3_tokenizer_encode(tok, " the", 4, 0, &ids, &n) == 0 && n == 1, "' the' is one token (%zu)", n);
            free(ids);
            dsv3_tokenizer_free(tok);
        }
        unlink(path);
        dsv3_bpe_trainer_free(t);
    }
}

static void test_bad_options(void) {
    dsv3_bpe_trainer *t = dsv3_bpe_trainer_new();
    dsv3_bpe_train_opts o = {.vocab_size = 258};
    CHECK(dsv3_bpe_trainer_train(t, &o) == -1 && strstr(dsv3_error(), "vocab-size"), "vocab 258 rejected");
    dsv3_bpe_trainer_free(t);
    // No words at all: just the specials and bytes.
    t = dsv3_bpe_trainer_new();
    o.vocab_size = 500;
    CHECK(dsv3_bpe_trainer_train(t, &o) == 0 && dsv3_bpe_trainer_num_tokens(t) == 259, "empty corpus -> 259 tokens");
    dsv3_bpe_trainer_free(t);
}

int main(void) {
    test_hand_merges();
    test_tie_break();
    test_overlaps();
    test_roundtrip();
    test_bad_options();
    return test_report("test_bpe_train");
}
