// Element types as safetensors names them.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DSV3_F32 = 0, DSV3_BF16, DSV3_F16, DSV3_F8_E4M3, DSV3_F8_E5M2, DSV3_F8_E8M0,
    DSV3_F64, DSV3_I64, DSV3_I32, DSV3_I16, DSV3_I8, DSV3_U8, DSV3_BOOL, DSV3_DTYPE_COUNT
} dsv3_dtype;

size_t dsv3_dtype_size(dsv3_dtype t);         // bytes per element
const char *dsv3_dtype_name(dsv3_dtype t);    // safetensors spelling, e.g. "F8_E4M3"
int dsv3_dtype_parse(const char *s, dsv3_dtype *out); // 0, or -1 if unknown (no message set)
