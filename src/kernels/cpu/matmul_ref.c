#include "kernels/cpu/matmul.h"
#include "numerics/bf16.h"
#include "numerics/fp8.h"
#include "core/error.h"
#include <stdlib.h>

void dsv3_mat_row_f32(const dsv3_mat *w, int r, float *out) {
    size_t base = (size_t)r * w->cols;
    switch (w->dtype) {
    case DSV3_F32: { const float *p = (const float *)w->data + base; for (int c = 0; c < w->cols; c++) out[c] = p[c]; break; }
    case DSV3_BF16: { const uint16_t *p = (const uint16_t *)w->data + base; for (int c = 0; c < w->cols; c++) out[c] = dsv3_bf16_to_f32(p[c]); break; }
    case DSV3_F16: { const uint16_t *p = (const uint16_t *)w->data + base; for (int c = 0; c < w->cols; c++) out[c] = dsv3_f16_to_f32(p[c]); break; }
    case DSV3_F8_E4M3: {
        const uint8_t *p = (const uint8_t *)w->data + base;
        int nbc = (w->cols + w->block_cols - 1) / w->block_cols;
        const float *s = w->scale + (size_t)(r / w->block_rows) * nbc;
        for (int c = 0; c < w->cols; c++) out[c] = dsv3_e4m3_to_f32(p[c]) * s[c / w->block_cols];
        break;
    }
    default: dsv3_panic(__FILE__, __LINE__, "matmul: unsupported weight dtype %s", dsv3_dtype_name(w->dtype));
    }
}

void dsv3_matmul_ref(float *y, const float *x, const dsv3_mat *w, int M) {
    float *row = dsv3_malloc(sizeof(float) * (size_t)w->cols);
    for (int r = 0; r < w->rows; r++) {
        dsv3_mat_row_f32(w, r, row);
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * w->cols;
            float acc = 0.0f;
            for (int c = 0; c < w->cols; c++) acc += xm[c] * row[c];
            y[(size_t)m * w->rows + r] = acc;
        }
    }
    free(row);
}
