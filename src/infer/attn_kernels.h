// Kernels of the latent-cache attention (src/infer/eval.c).
#pragma once

// lat (R, kvl) = P (R, L) · C, where C row j is the first kvl values of cache row j (row stride
// `row` elements, fp32 or bf16 when is_bf16). Work is split over (4-row group, 16-column chunk)
// tiles, so each thread streams its own columns of the cache once per row group. The AVX2 path
// (picked with dsv3_matmul's ISA) and the scalar one sum over j in the same order.
void dsv3_attn_pc(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl);
// The scalar definition (tests compare the fast path with it).
void dsv3_attn_pc_ref(float *lat, const float *P, int R, int L, const void *cache, int is_bf16, int row, int kvl);
