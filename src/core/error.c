#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

static _Thread_local char g_err[2048];

int dsv3_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return -1;
}

int dsv3_error_context(const char *fmt, ...) {
    char ctx[1024], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    int n = snprintf(g_err, sizeof g_err, "%s: ", ctx);
    if (n < 0 || n >= (int)sizeof g_err) n = 0;
    snprintf(g_err + n, sizeof g_err - (size_t)n, "%.*s", (int)(sizeof g_err - (size_t)n - 1), old);
    return -1;
}

const char *dsv3_error(void) { return g_err; }
void dsv3_error_clear(void) { g_err[0] = 0; }

void dsv3_panic(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "dsv3: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static void oom(size_t n) {
    fprintf(stderr, "dsv3: out of memory allocating %zu bytes\n", n);
    abort();
}
static unsigned long g_allocs; // allocations made through these wrappers (dsv3_alloc_count)
static void counted(void) { __atomic_add_fetch(&g_allocs, 1, __ATOMIC_RELAXED); }
unsigned long dsv3_alloc_count(void) { return __atomic_load_n(&g_allocs, __ATOMIC_RELAXED); }
void *dsv3_malloc(size_t n) { counted(); void *p = malloc(n ? n : 1); if (!p) oom(n); return p; }
void *dsv3_calloc(size_t n, size_t size) { counted(); void *p = calloc(n ? n : 1, size ? size : 1); if (!p) oom(n * size); return p; }
void *dsv3_realloc(void *p, size_t n) { counted(); void *q = realloc(p, n ? n : 1); if (!q) oom(n); return q; }
void *dsv3_alloc_pages(size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return aligned_alloc(64, (n + 63) / 64 * 64);
    n = (n + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, n);
    if (p) madvise(p, n, MADV_HUGEPAGE); // advice only: ignored where THP is off
    return p;
}

char *dsv3_strdup(const char *s) { size_t n = strlen(s) + 1; char *p = dsv3_malloc(n); memcpy(p, s, n); return p; }
