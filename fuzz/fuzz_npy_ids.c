// libFuzzer harness: arbitrary bytes as a .npy file and as a token id list (`logits --ids-file`:
// text ids or a .npy of int32/int64). The .npy header parser must fail with a message naming the
// input or describe a data section that exactly fills the rest of the buffer; the id parser must
// fail with a message or return 1..max ids in [0, 2^31). Built by fuzz/run.sh.
#include "core/error.h"
#include "core/ids.h"
#include "core/npy.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsv3_npy_info in;
    dsv3_error_clear();
    if (dsv3_npy_parse(data, size, "fuzz.npy", &in) == 0) {
        if (in.data_offset > size || in.count * in.elem_size != size - in.data_offset) abort();
        if (in.ndim < 0 || in.ndim > DSV3_NPY_MAX_DIMS) abort();
        uint64_t c = 1;
        for (int i = 0; i < in.ndim; i++) c *= (uint64_t)in.shape[i];
        if (c != in.count) abort();
    } else if (!strstr(dsv3_error(), "fuzz.npy")) abort();

    int32_t *ids = NULL;
    size_t n = 0;
    dsv3_error_clear();
    if (dsv3_ids_parse((const char *)data, size, "fuzz.ids", 4096, &ids, &n) == 0) {
        if (n == 0 || n > 4096) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0) abort();
        free(ids);
    } else if (!strstr(dsv3_error(), "fuzz.ids") || ids) abort();
    return 0;
}
