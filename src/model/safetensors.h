// safetensors reader (mmap; one file, or sharded with model.safetensors.index.json) and writer.
// Validation follows the format's own rules: header size limit, JSON object of tensors with
// dtype/shape/data_offsets, offsets inside the data section, no overlaps, dtype x shape = bytes.
#pragma once
#include "core/dtype.h"
#include "core/fileio.h"
#include <stdint.h>

#define DSV3_ST_MAX_DIMS 8

typedef struct {
    char *name;
    dsv3_dtype dtype;
    int ndim;
    int64_t shape[DSV3_ST_MAX_DIMS];
    const void *data;   // points into the mapping
    size_t nbytes;
    int file;           // index into dsv3_st.files
} dsv3_st_tensor;

typedef struct {
    int nfiles;
    dsv3_mmap *files;
    int ntensors;
    dsv3_st_tensor *tensors; // sorted by name
} dsv3_st;

// Open a single .safetensors file.
int dsv3_st_open_file(dsv3_st *st, const char *path);
// Open a model directory: model.safetensors.index.json if present, else model.safetensors, else
// every *.safetensors file in the directory.
int dsv3_st_open_dir(dsv3_st *st, const char *dir);
void dsv3_st_close(dsv3_st *st);
// Lookup by exact name (NULL if absent).
const dsv3_st_tensor *dsv3_st_find(const dsv3_st *st, const char *name);
int64_t dsv3_st_numel(const dsv3_st_tensor *t);

// Writer: collect tensors (borrowed pointers), then write atomically.
typedef struct dsv3_st_writer dsv3_st_writer;
dsv3_st_writer *dsv3_st_writer_new(void);
void dsv3_st_writer_add(dsv3_st_writer *w, const char *name, dsv3_dtype dt, int ndim,
                        const int64_t *shape, const void *data);
void dsv3_st_writer_set_metadata(dsv3_st_writer *w, const char *key, const char *value);
int dsv3_st_writer_save(dsv3_st_writer *w, const char *path); // 0 / -1, nothing left on failure
void dsv3_st_writer_free(dsv3_st_writer *w);
