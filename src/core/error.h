// Errors for people (DESIGN principle 6).
//
// Library code that can fail on user input (files, configs, requests) never exits: it records one
// message naming the file / field / tensor, what was expected and what was found, and returns -1
// (or NULL). The CLI prints that message and exits with DSV3_EXIT_BADINPUT. Internal invariants use
// DSV3_ASSERT, which prints file:line and aborts: those are bugs, not bad input.
#pragma once
#include <stddef.h>

#define DSV3_EXIT_BADINPUT 2

// Record an error message (printf-style) and return -1. Thread-local; the last one wins.
int dsv3_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefix the current message with more context: "ctx: <old message>". Returns -1.
int dsv3_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The last recorded message ("" if none).
const char *dsv3_error(void);
void dsv3_error_clear(void);

// Fatal internal error: prints "dsv3: internal error at file:line: msg" and aborts.
void dsv3_panic(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define DSV3_ASSERT(c) do { if (!(c)) dsv3_panic(__FILE__, __LINE__, "assertion failed: %s", #c); } while (0)

// Allocation that cannot fail silently: out of memory is reported with the size and aborts.
void *dsv3_malloc(size_t n);
void *dsv3_calloc(size_t n, size_t size);
void *dsv3_realloc(void *p, size_t n);
char *dsv3_strdup(const char *s);
// Large working buffers (GEMM packs, arenas): 64-byte aligned; from 2 MiB up, 2 MiB aligned and
// advised as transparent huge pages (MADV_HUGEPAGE: Linux's default THP mode is "madvise"), so a
// pass that writes many panels far apart does not miss the TLB at every store. Release with free();
// NULL when out of memory (not counted by dsv3_alloc_count: callers allocate them grow-only).
void *dsv3_alloc_pages(size_t n);
// Number of allocations made through the wrappers above since start (a training or decode step
// must not change it: tests check the count across a step).
unsigned long dsv3_alloc_count(void);
