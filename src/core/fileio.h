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

// Whole-file reads (or stdin for "-") into a NUL-terminated heap buffer, with a size cap: every
// caller states the most it will hold (docs/RELIABILITY.md lists them), so a huge or endless input
// (/dev/zero, a pipe) is refused with a message instead of exhausting memory. Directories are
// refused by name; character devices and pipes are read up to the cap. `what` names the input in
// the message ("a config.json"). Returns NULL with dsv3_error() naming the file and the problem.
#define DSV3_READ_MAX_DEFAULT ((size_t)1 << 30) // 1 GiB: dsv3_read_file
#define DSV3_READ_MAX_JSON ((size_t)64 << 20)   // 64 MiB: config.json, tokenizer_config.json, index files
char *dsv3_read_file_max(const char *path, size_t max_bytes, const char *what, size_t *size_out);
char *dsv3_read_file(const char *path, size_t *size_out); // cap DSV3_READ_MAX_DEFAULT
// "16 MiB", "1 GiB", "4096 bytes": a byte count for messages (buf of at least 32 bytes).
const char *dsv3_fmt_bytes(char *buf, size_t cap, unsigned long long n);

// Flush stdout and check that everything written to it arrived (a full disk, /dev/full, a closed
// pipe): 0, or -1 with dsv3_error() = "stdout: write failed: <reason>". Commands that print call it
// before returning success.
int dsv3_stdout_flush(void);

// Atomic writer: writes go to "<path>.tmp.<pid>", commit renames it over `path`, abort unlinks it.
// "-" writes to stdout directly.
typedef struct {
    FILE *f;
    char *path, *tmp;
    int failed;
} dsv3_writer;
int dsv3_writer_open(dsv3_writer *w, const char *path);
int dsv3_writer_write(dsv3_writer *w, const void *buf, size_t n);
int dsv3_writer_commit(dsv3_writer *w); // fsyncs the file, renames, fsyncs the folder (core/durable.h); returns -1 if any write failed (and removes the temp)
void dsv3_writer_abort(dsv3_writer *w);

// Join a directory and a file name into a new heap string.
char *dsv3_path_join(const char *dir, const char *name);
int dsv3_file_exists(const char *path);
