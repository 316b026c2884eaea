// NumPy .npy files (format versions 1.0, 2.0 and 3.0 read; 1.0 written), little-endian, C order:
// the layout numpy.save writes and numpy.load reads.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define DSV3_NPY_MAX_DIMS 8
#define DSV3_NPY_MAX_HEADER 65536             // header dict bytes accepted (numpy writes < 200)
#define DSV3_NPY_MAX_READ_BYTES ((uint64_t)16 << 30) // 16 GiB: the most dsv3_npy_read_f32 copies into memory

typedef enum { DSV3_NPY_F32 = 0, DSV3_NPY_I32 = 1, DSV3_NPY_I64 = 2 } dsv3_npy_dtype;

typedef struct {
    dsv3_npy_dtype dtype;          // '<f4', '<i4' or '<i8' (also '|'-less '=' forms are refused)
    int ndim;
    int64_t shape[DSV3_NPY_MAX_DIMS];
    uint64_t count;                // prod(shape)
    size_t elem_size;              // 4 or 8
    size_t data_offset;            // bytes before the data
} dsv3_npy_info;

// Parse and validate the header of a whole .npy held in memory: magic, version, header length, the
// dict {'descr': ..., 'fortran_order': False, 'shape': (...)} (each key once, nothing else), and a
// data size equal to count x elem_size. Returns 0, or -1 with dsv3_error() naming `name`.
int dsv3_npy_parse(const unsigned char *buf, size_t size, const char *name, dsv3_npy_info *info);

// Write data (prod(shape) floats) atomically: nothing is left at `path` on failure ("-": stdout).
// Returns 0, or -1 with dsv3_error() naming the file.
int dsv3_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

// Read a float32 ('<f4'), C-order .npy (a regular file, mapped; at most DSV3_NPY_MAX_READ_BYTES of
// data). On success *data is a dsv3_malloc'd buffer (free()), *ndim and shape[0..ndim) are set.
// Returns 0, or -1 with dsv3_error() naming the file and problem.
int dsv3_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[DSV3_NPY_MAX_DIMS]);

// Read a 2-D .npy of int32/int64 token ids ([rows, cols], C order) as int32: every id must be in
// [0, 2^31). At most max_count ids. On success *ids is dsv3_malloc'd. Returns 0, or -1 with
// dsv3_error() naming the file (and the row and position of a bad id).
int dsv3_npy_read_ids_2d(const char *path, uint64_t max_count, int32_t **ids, int64_t *rows, int64_t *cols);
