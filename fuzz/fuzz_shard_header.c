// libFuzzer harness: arbitrary bytes as a token shard (src/train/data.h: 64-byte header + uint32
// rows). dsv3_shard_parse_header must fail with a message naming the file, or return a header whose
// rows x (seq_len + 1) tokens fit in the buffer after the header. Public API only. Built by fuzz/run.sh.
#include "core/error.h"
#include "train/data.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsv3_shard_header h;
    dsv3_error_clear();
    if (dsv3_shard_parse_header(data, size, "fuzz.bin", &h) != 0) {
        if (!strstr(dsv3_error(), "fuzz.bin")) abort();
        return 0;
    }
    if (size < DSV3_SHARD_HEADER_BYTES || h.tokens > (size - DSV3_SHARD_HEADER_BYTES) / 4) abort();
    if ((unsigned __int128)h.rows * ((uint64_t)h.seq_len + 1) != h.tokens) abort();
    (void)dsv3_fnv1a64(data + DSV3_SHARD_HEADER_BYTES, (size_t)h.tokens * 4);
    return 0;
}
