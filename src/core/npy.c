// .npy writer/reader (see npy.h). Header: "\x93NUMPY", version 1.0, uint16 little-endian header
// length, then a Python dict literal padded with spaces and ending in '\n' so that the data starts
// at a multiple of 64 bytes.
#include "core/npy.h"
#include "core/error.h"
#include "core/fileio.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dsv3_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > DSV3_NPY_MAX_DIMS) return dsv3_errorf("%s: npy rank %d not supported", path, ndim);
    char tup[256] = "";
    int tn = 0;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return dsv3_errorf("%s: negative npy dimension", path);
        tn += snprintf(tup + tn, sizeof tup - tn, i ? ", %lld" : "%lld", (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    if (ndim == 1) tn += snprintf(tup + tn, sizeof tup - tn, ",");
    char dict[320];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tup);
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    dsv3_writer w;
    if (dsv3_writer_open(&w, path) != 0) return -1;
    dsv3_writer_write(&w, pre, 10);
    dsv3_writer_write(&w, dict, (size_t)n);
    for (size_t i = 0; i < pad; i++) dsv3_writer_write(&w, " ", 1);
    dsv3_writer_write(&w, "\n", 1);
    if (count) dsv3_writer_write(&w, data, count * sizeof(float));
    return dsv3_writer_commit(&w);
}

// Find `'key':` in the header dict and return a pointer just past the colon and spaces.
static const char *dict_value(const char *h, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

int dsv3_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[DSV3_NPY_MAX_DIMS]) {
    *data = NULL;
    size_t size;
    char *buf = dsv3_read_file(path, &size);
    if (!buf) return -1;
    const unsigned char *u = (const unsigned char *)buf;
    if (size < 10 || memcmp(u, "\x93NUMPY", 6) != 0) { free(buf); return dsv3_errorf("%s: not a .npy file (bad magic)", path); }
    size_t hlen, hoff;
    if (u[6] == 1) { hlen = u[8] | (size_t)u[9] << 8; hoff = 10; }
    else if (u[6] == 2 || u[6] == 3) {
        if (size < 12) { free(buf); return dsv3_errorf("%s: truncated .npy header", path); }
        hlen = u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24; hoff = 12;
    } else { int v = u[6]; free(buf); return dsv3_errorf("%s: unsupported .npy version %d", path, v); }
    if (hoff + hlen > size) { free(buf); return dsv3_errorf("%s: truncated .npy header (%zu bytes, file %zu)", path, hlen, size); }
    char *h = dsv3_malloc(hlen + 1);
    memcpy(h, buf + hoff, hlen);
    h[hlen] = '\0';
    int rc = -1;
    const char *d = dict_value(h, "descr"), *f = dict_value(h, "fortran_order"), *s = dict_value(h, "shape");
    if (!d || !f || !s) { dsv3_errorf("%s: .npy header lacks descr/fortran_order/shape", path); goto out; }
    if (strncmp(d, "'<f4'", 5) != 0) { dsv3_errorf("%s: .npy dtype is not float32 '<f4'", path); goto out; }
    if (strncmp(f, "False", 5) != 0) { dsv3_errorf("%s: .npy is Fortran-ordered (expected C order)", path); goto out; }
    if (*s != '(') { dsv3_errorf("%s: .npy shape is not a tuple", path); goto out; }
    s++;
    int nd = 0;
    size_t count = 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0) { dsv3_errorf("%s: bad .npy shape", path); goto out; }
        if (nd == DSV3_NPY_MAX_DIMS) { dsv3_errorf("%s: .npy rank above %d", path, DSV3_NPY_MAX_DIMS); goto out; }
        if (v > 0 && count > ((size_t)1 << 40) / (size_t)v) { dsv3_errorf("%s: .npy shape too large", path); goto out; }
        shape[nd++] = v;
        count *= (size_t)v;
        s = end;
    }
    if (size - hoff - hlen != count * sizeof(float)) {
        dsv3_errorf("%s: .npy data is %zu bytes (expected %zu for the shape)", path, size - hoff - hlen, count * sizeof(float));
        goto out;
    }
    *data = dsv3_malloc(count ? count * sizeof(float) : 1);
    memcpy(*data, buf + hoff + hlen, count * sizeof(float));
    *ndim = nd;
    rc = 0;
out:
    free(h);
    free(buf);
    return rc;
}
