// Token id lists given by a user: text (decimal ids separated by commas and/or whitespace, e.g.
// "5,17,300" or one id per line) or a .npy of int32 / int64 (shape (T,) or (1, T)). Used by
// `dsv3 logits --ids / --ids-file`.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define DSV3_IDS_FILE_MAX_BYTES ((size_t)64 << 20) // an ids file is read whole: 64 MiB at most

// Parse `len` bytes (text, or a whole .npy when they start with its magic). Every id must be in
// [0, 2^31); at most max_ids of them, at least one. *ids is dsv3_malloc'd (free()), *n its length.
// Returns 0, or -1 with dsv3_error() naming `name` and the first bad id by position.
int dsv3_ids_parse(const char *buf, size_t len, const char *name, size_t max_ids, int32_t **ids, size_t *n);
// Read and parse a file ("-": stdin) of at most DSV3_IDS_FILE_MAX_BYTES.
int dsv3_ids_read_file(const char *path, size_t max_ids, int32_t **ids, size_t *n);
