// libFuzzer harness: arbitrary bytes as a checkpoint's trainer_state.bin (src/train/checkpoint.h:
// magic, version, JSON header, fp32 masters + AdamW moments with an FNV-1a checksum).
// dsv3_ckpt_read_state must fail with a message naming the file, or accept a file whose size is
// exactly the header plus the arenas of the model it is read into (64 floats here) and whose JSON
// parses. Public API only. Built by fuzz/run.sh.
#include "core/error.h"
#include "train/checkpoint.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/dsv3_fuzz_state_XXXXXX");
        if (!mkdtemp(g_dir)) abort();
    }
    char path[128];
    snprintf(path, sizeof path, "%s/trainer_state.bin", g_dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    dsv3_tmodel tm;
    memset(&tm, 0, sizeof tm);
    float params[64];
    tm.tab.total = 64;
    tm.params = params;
    dsv3_adamw o;
    memset(&o, 0, sizeof o);
    char *json = NULL;
    dsv3_error_clear();
    if (dsv3_ckpt_read_state(g_dir, &json, &tm, &o) != 0) {
        if (!strstr(dsv3_error(), "trainer_state.bin") || json) abort();
    } else {
        if (!json || o.n != 64) abort();
        const size_t es = o.m ? 4 : 2;
        if (size < 16 + 4 * 64 + 2 * es * 64) abort();
        free(json);
    }
    dsv3_adamw_free(&o);
    return 0;
}
