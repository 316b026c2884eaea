// libFuzzer harness: arbitrary bytes as a session (prompt cache) file (src/infer/session_io.c).
// dsv3_session_load_ex into a session of the g_mtp fixture model must either fail with a message
// and leave the session empty, or accept a file whose lengths fit the session and whose tokens
// are in the vocabulary; an accepted session saves and reloads to the same tokens. Built by
// fuzz/run.sh.
#include "dsv3.h"
#include "core/error.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static dsv3_lm *g_lm;
static dsv3_session *g_s, *g_t;
static char g_path[64], g_path2[72];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_lm) {
        g_lm = dsv3_lm_load("tests/fixtures/model/g_mtp");
        if (!g_lm) { fprintf(stderr, "fuzz_session_file: %s (run from the repository root)\n", dsv3_error()); abort(); }
        g_s = dsv3_session_new(g_lm, 64, DSV3_CACHE_F32);
        g_t = dsv3_session_new(g_lm, 64, DSV3_CACHE_BF16);
        snprintf(g_path, sizeof g_path, "/tmp/dsv3_fuzz_session_%d.kv", (int)getpid());
        snprintf(g_path2, sizeof g_path2, "%s.2", g_path);
    }
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    char *extra = NULL;
    size_t xl = 0;
    dsv3_error_clear();
    if (dsv3_session_load_ex(g_s, g_path, &extra, &xl) != 0) {
        if (!dsv3_error()[0] || dsv3_session_len(g_s) != 0 || extra) abort();
        return 0;
    }
    const int n = dsv3_session_len(g_s), V = dsv3_lm_vocab_size(g_lm);
    if (n > dsv3_session_ctx(g_s) || dsv3_session_mtp_len(g_s) > n || !extra) abort();
    for (int i = 0; i < n; i++)
        if (dsv3_session_tokens(g_s)[i] < 0 || dsv3_session_tokens(g_s)[i] >= V) abort();
    if (dsv3_session_save_ex(g_s, g_path2, extra, xl) != 0) abort();
    if (dsv3_session_load(g_t, g_path2) != 0 || dsv3_session_len(g_t) != n ||
        memcmp(dsv3_session_tokens(g_t), dsv3_session_tokens(g_s), sizeof(int32_t) * (size_t)n) != 0)
        abort();
    free(extra);
    unlink(g_path2);
    return 0;
}
