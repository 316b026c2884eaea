// libFuzzer harness: arbitrary bytes as a dataset's manifest.json, opened with the public reader
// (dsv3_data_open, both splits, cheap and full verification) in a copy of a real prepared dataset
// ($DSV3_FUZZ_DATA_DIR, made by fuzz/run.sh with `dsv3 data prepare`), so that manifests naming its
// real shards reach the shard checks. Opening must fail with a message, or give a reader whose every
// row is readable and whose tokens are below the vocabulary size. Built by fuzz/run.sh.
#include "core/error.h"
#include "train/data.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *dir = getenv("DSV3_FUZZ_DATA_DIR");
    if (!dir) {
        fprintf(stderr, "fuzz_data_manifest: set DSV3_FUZZ_DATA_DIR to a prepared dataset directory\n");
        exit(2);
    }
    snprintf(g_path, sizeof g_path, "%s/fuzz-manifest.json", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    static const char *splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++)
        for (int verify = 0; verify < 2; verify++) {
            dsv3_error_clear();
            dsv3_data *d = dsv3_data_open(g_path, splits[s], verify);
            if (!d) {
                if (!dsv3_error()[0]) abort();
                continue;
            }
            const uint64_t rows = dsv3_data_num_rows(d);
            const int L = dsv3_data_seq_len(d), V = dsv3_data_vocab_size(d);
            if (L <= 0 || V <= 0) abort();
            for (uint64_t i = 0; i < rows && i < 64; i++) {
                const uint32_t *r = dsv3_data_row(d, i);
                if (!r) abort();
                for (int k = 0; k <= L && verify; k++)
                    if (r[k] >= (uint32_t)V) abort(); // full verification checked every id
            }
            dsv3_data_close(d);
        }
    return 0;
}
