#include "core/dtype.h"
#include <string.h>

static const struct { const char *name; size_t size; } k_dtypes[DSV3_DTYPE_COUNT] = {
    [DSV3_F32] = {"F32", 4},     [DSV3_BF16] = {"BF16", 2},       [DSV3_F16] = {"F16", 2},
    [DSV3_F8_E4M3] = {"F8_E4M3", 1}, [DSV3_F8_E5M2] = {"F8_E5M2", 1}, [DSV3_F8_E8M0] = {"F8_E8M0", 1},
    [DSV3_F64] = {"F64", 8},     [DSV3_I64] = {"I64", 8},         [DSV3_I32] = {"I32", 4},
    [DSV3_I16] = {"I16", 2},     [DSV3_I8] = {"I8", 1},           [DSV3_U8] = {"U8", 1},
    [DSV3_BOOL] = {"BOOL", 1},
};

size_t dsv3_dtype_size(dsv3_dtype t) { return (unsigned)t < DSV3_DTYPE_COUNT ? k_dtypes[t].size : 0; }
const char *dsv3_dtype_name(dsv3_dtype t) { return (unsigned)t < DSV3_DTYPE_COUNT ? k_dtypes[t].name : "?"; }
int dsv3_dtype_parse(const char *s, dsv3_dtype *out) {
    for (int i = 0; i < DSV3_DTYPE_COUNT; i++)
        if (strcmp(s, k_dtypes[i].name) == 0) { *out = (dsv3_dtype)i; return 0; }
    return -1;
}
