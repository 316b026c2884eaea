// Files: read-only mmap, whole-file reads, and atomic writes (temp file + rename) so that a failed
// command never leaves a partial output file behind.
#pragma once
#include <stddef.h>
#include <stdio.h>

typedef struct {
    const unsigned char *data; // the mapped bytes (NULL for an empty file)
    size_t size;               // file size in bytes
    char *path;                // owned copy of the path, for error messages
} dsv3_mmap;

// Map `path` read-only. Returns 0, or -1 with dsv3_error() naming the file.
int dsv3_mmap_open(dsv3_mmap *m, const char *path);
void dsv3_mmap_close(dsv3_mmap *m);

// Read a whole file (or stdin for "-") into a NUL-terminated heap buffer. Returns NULL on error.
char *dsv3_read_file(const char *path, size_t *size_out);

// Atomic writer: writes go to "<path>.tmp.<pid>", commit renames it over `path`, abort unlinks it.
// "-" writes to stdout directly.
typedef struct {
    FILE *f;
    char *path, *tmp;
    int failed;
} dsv3_writer;
int dsv3_writer_open(dsv3_writer *w, const char *path);
int dsv3_writer_write(dsv3_writer *w, const void *buf, size_t n);
int dsv3_writer_commit(dsv3_writer *w); // fsync-free; returns -1 if any write failed (and removes the temp)
void dsv3_writer_abort(dsv3_writer *w);

// Join a directory and a file name into a new heap string.
char *dsv3_path_join(const char *dir, const char *name);
int dsv3_file_exists(const char *path);
