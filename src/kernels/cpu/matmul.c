// Fast matmul. Placeholder that parallelizes the reference over output rows; replaced by the
// blocked SIMD kernels (see docs/PERF.md).
#include "kernels/cpu/matmul.h"
#include "core/error.h"
#include <stdlib.h>

void dsv3_matmul(float *y, const float *x, const dsv3_mat *w, int M) {
    #pragma omp parallel
    {
        float *row = dsv3_malloc(sizeof(float) * (size_t)w->cols);
        #pragma omp for schedule(static)
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
}
