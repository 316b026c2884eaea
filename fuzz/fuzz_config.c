// libFuzzer harness: arbitrary bytes as config.json. Parsing must fail with a message naming the
// file, or give a config that validates and whose counts are consistent (active <= total, KV bytes
// > 0) with derived RoPE quantities computable. Built by fuzz/run.sh.
#include "core/error.h"
#include "model/config.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    dsv3_config c;
    dsv3_error_clear();
    if (dsv3_config_parse(&c, text, "fuzz.json") != 0) {
        if (!strstr(dsv3_error(), "fuzz.json")) abort(); // a failure must name the file
        free(text);
        return 0;
    }
    if (dsv3_config_validate(&c, "fuzz.json") != 0) abort(); // parse already validated
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    if (k.total_params == 0 || k.active_params > k.total_params || k.kv_bytes_per_token == 0) abort();
    char buf[48];
    dsv3_count_str(buf, sizeof buf, k.total_params);
    (void)dsv3_softmax_scale(&c);
    (void)dsv3_rope_attention_factor(&c);
    if (c.qk_rope_head_dim <= 1 << 16) {
        float *inv = malloc(sizeof(float) * (size_t)(c.qk_rope_head_dim / 2 + 1));
        dsv3_rope_inv_freq(&c, inv);
        free(inv);
    }
    free(text);
    return 0;
}
