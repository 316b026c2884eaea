// Reader for the small fixture container written by tools/ref/make_fp8_fixtures.py ("DSV3FX01": a list
// of named little-endian arrays; the format is described at the top of that script). Test-only.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[64];
    uint32_t dtype;      // 0 f32, 1 u8, 2 i32, 3 u16
    uint32_t ndim, dims[4];
    size_t count;        // elements
    void *data;
} fx_array;

typedef struct { int n; fx_array a[64]; } fx_file;

static inline size_t fx_esize(uint32_t dt) { return dt == 1 ? 1 : dt == 3 ? 2 : 4; }

// Loads the whole file; returns 0, or -1 with a message on stderr (truncated / bad header).
static inline int fx_load(fx_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "%s: cannot open\n", path); return -1; }
    char magic[8];
    uint32_t n;
    if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, "DSV3FX01", 8) || fread(&n, 4, 1, fp) != 1 || n > 64) goto bad;
    for (uint32_t i = 0; i < n; i++) {
        fx_array *a = &f->a[i];
        uint32_t len;
        if (fread(&len, 4, 1, fp) != 1 || len >= sizeof a->name || fread(a->name, 1, len, fp) != len) goto bad;
        if (fread(&a->dtype, 4, 1, fp) != 1 || a->dtype > 3 || fread(&a->ndim, 4, 1, fp) != 1 || a->ndim > 4) goto bad;
        if (fread(a->dims, 4, a->ndim, fp) != a->ndim) goto bad;
        a->count = 1;
        for (uint32_t d = 0; d < a->ndim; d++) a->count *= a->dims[d];
        if (a->count > (1u << 26)) goto bad;
        a->data = malloc(a->count * fx_esize(a->dtype) + 1);
        if (fread(a->data, fx_esize(a->dtype), a->count, fp) != a->count) goto bad;
        f->n = (int)i + 1;
    }
    fclose(fp);
    return 0;
bad:
    fprintf(stderr, "%s: malformed fixture file\n", path);
    fclose(fp);
    return -1;
}

static inline void fx_free(fx_file *f) { for (int i = 0; i < f->n; i++) free(f->a[i].data); f->n = 0; }

// The array called `name` with the given dtype, or NULL (and a message) if missing.
static inline const fx_array *fx_get(const fx_file *f, const char *name, uint32_t dtype) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->a[i].name, name) == 0 && f->a[i].dtype == dtype) return &f->a[i];
    fprintf(stderr, "fixture array %s (dtype %u) missing\n", name, dtype);
    return NULL;
}
