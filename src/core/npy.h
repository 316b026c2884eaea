// NumPy .npy files (format version 1.0), float32 little-endian, C order: the layout numpy.save
// writes for a float32 array and numpy.load reads.
#pragma once
#include <stdint.h>

#define DSV3_NPY_MAX_DIMS 8

// Write data (prod(shape) floats) atomically: nothing is left at `path` on failure.
// Returns 0, or -1 with dsv3_error() naming the file.
int dsv3_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

// Read a float32 ('<f4'), C-order .npy. On success *data is a dsv3_malloc'd buffer (free()),
// *ndim and shape[0..ndim) are set. Returns 0, or -1 with dsv3_error() naming the file and problem.
int dsv3_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[DSV3_NPY_MAX_DIMS]);
