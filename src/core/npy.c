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

// ---------------------------------------------------------------------------------------------
// Reader. The header is a Python dict literal as numpy writes it; this parser accepts exactly
// that grammar (quoted keys, a quoted descr, True/False, a tuple of non-negative integers), with
// any spacing, each key once, an optional trailing comma, then spaces and a final '\n'.

typedef struct { const char *p, *end; } npy_cur;

static void skip_ws(npy_cur *c) { while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++; }
static int eat(npy_cur *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) { c->p++; return 1; }
    return 0;
}
// A quoted string ('...' or "..."; no escapes) into out[cap]. 0 or -1.
static int quoted(npy_cur *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    const char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\n' || n + 1 >= cap) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = 0;
    return 0;
}
static int word(npy_cur *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) { c->p += n; return 1; }
    return 0;
}

int dsv3_npy_parse(const unsigned char *u, size_t size, const char *name, dsv3_npy_info *info) {
    memset(info, 0, sizeof *info);
    if (size < 10 || memcmp(u, "\x93NUMPY", 6) != 0) return dsv3_errorf("%s: not a .npy file (bad magic)", name);
    size_t hlen, hoff;
    if (u[6] == 1) hlen = u[8] | (size_t)u[9] << 8, hoff = 10;
    else if (u[6] == 2 || u[6] == 3) {
        if (size < 12) return dsv3_errorf("%s: truncated .npy header", name);
        hlen = u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24, hoff = 12;
    } else return dsv3_errorf("%s: unsupported .npy version %d", name, u[6]);
    if (hlen > DSV3_NPY_MAX_HEADER) return dsv3_errorf("%s: .npy header of %zu bytes (at most %d supported)", name, hlen, DSV3_NPY_MAX_HEADER);
    if (hlen > size - hoff) return dsv3_errorf("%s: truncated .npy header (%zu bytes, file %zu)", name, hlen, size);
    npy_cur c = {(const char *)u + hoff, (const char *)u + hoff + hlen};
    int have_d = 0, have_f = 0, have_s = 0;
    char key[32], descr[16];
    if (!eat(&c, '{')) return dsv3_errorf("%s: .npy header is not a dict", name);
    while (!eat(&c, '}')) {
        if (quoted(&c, key, sizeof key) != 0 || !eat(&c, ':')) return dsv3_errorf("%s: malformed .npy header dict", name);
        if (strcmp(key, "descr") == 0 && !have_d) {
            if (quoted(&c, descr, sizeof descr) != 0) return dsv3_errorf("%s: .npy 'descr' is not a string", name);
            if (strcmp(descr, "<f4") == 0) info->dtype = DSV3_NPY_F32, info->elem_size = 4;
            else if (strcmp(descr, "<i4") == 0) info->dtype = DSV3_NPY_I32, info->elem_size = 4;
            else if (strcmp(descr, "<i8") == 0) info->dtype = DSV3_NPY_I64, info->elem_size = 8;
            else return dsv3_errorf("%s: .npy dtype '%.8s' is not supported (expected '<f4', '<i4' or '<i8')", name, descr);
            have_d = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_f) {
            if (word(&c, "True")) return dsv3_errorf("%s: .npy is Fortran-ordered (expected C order)", name);
            if (!word(&c, "False")) return dsv3_errorf("%s: .npy 'fortran_order' is not True or False", name);
            have_f = 1;
        } else if (strcmp(key, "shape") == 0 && !have_s) {
            if (!eat(&c, '(')) return dsv3_errorf("%s: .npy shape is not a tuple", name);
            uint64_t count = 1;
            int nd = 0;
            while (!eat(&c, ')')) {
                skip_ws(&c);
                if (c.p >= c.end || *c.p < '0' || *c.p > '9') return dsv3_errorf("%s: bad .npy shape", name);
                uint64_t v = 0;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    v = v * 10 + (uint64_t)(*c.p++ - '0');
                    if (v > ((uint64_t)1 << 48)) return dsv3_errorf("%s: .npy dimension too large", name);
                }
                if (nd == DSV3_NPY_MAX_DIMS) return dsv3_errorf("%s: .npy rank above %d", name, DSV3_NPY_MAX_DIMS);
                if (v && count > ((uint64_t)1 << 48) / v) return dsv3_errorf("%s: .npy shape too large", name);
                info->shape[nd++] = (int64_t)v;
                count *= v;
                // "(3,)" and "(3, 4)": a comma after each entry except possibly the last; one entry needs it
                if (!eat(&c, ',')) {
                    if (!eat(&c, ')')) return dsv3_errorf("%s: bad .npy shape", name);
                    if (nd == 1) return dsv3_errorf("%s: bad .npy shape (a 1-tuple needs a trailing comma)", name);
                    break;
                }
            }
            info->ndim = nd;
            info->count = count;
            have_s = 1;
        } else return dsv3_errorf("%s: .npy header key '%s' is unknown or repeated", name, key);
        if (!eat(&c, ',')) {
            if (!eat(&c, '}')) return dsv3_errorf("%s: malformed .npy header dict", name);
            break;
        }
    }
    if (!have_d || !have_f || !have_s) return dsv3_errorf("%s: .npy header lacks descr/fortran_order/shape", name);
    skip_ws(&c);
    if (c.p + 1 != c.end || *c.p != '\n') return dsv3_errorf("%s: .npy header must end with spaces and a newline", name);
    info->data_offset = hoff + hlen;
    const uint64_t have = size - info->data_offset, want = info->count * info->elem_size;
    if (have != want)
        return dsv3_errorf("%s: .npy data is %llu bytes (expected %llu for the shape)", name, (unsigned long long)have,
                           (unsigned long long)want);
    return 0;
}

int dsv3_npy_read_f32(const char *path, float **data, int *ndim, int64_t shape[DSV3_NPY_MAX_DIMS]) {
    *data = NULL;
    dsv3_mmap m;
    if (dsv3_mmap_open(&m, path) != 0) return -1;
    dsv3_npy_info info;
    int rc = -1;
    if (dsv3_npy_parse(m.data, m.size, path, &info) != 0) goto out;
    if (info.dtype != DSV3_NPY_F32) { dsv3_errorf("%s: .npy dtype is not float32 '<f4'", path); goto out; }
    if (info.count * 4 > DSV3_NPY_MAX_READ_BYTES) {
        dsv3_errorf("%s: .npy data of %llu bytes is above the %llu GiB read limit", path, (unsigned long long)info.count * 4,
                    (unsigned long long)(DSV3_NPY_MAX_READ_BYTES >> 30));
        goto out;
    }
    *data = dsv3_malloc(info.count ? info.count * 4 : 1);
    if (info.count) memcpy(*data, m.data + info.data_offset, info.count * 4);
    *ndim = info.ndim;
    for (int i = 0; i < info.ndim; i++) shape[i] = info.shape[i];
    rc = 0;
out:
    dsv3_mmap_close(&m);
    return rc;
}

int dsv3_npy_read_ids_2d(const char *path, uint64_t max_count, int32_t **ids, int64_t *rows, int64_t *cols) {
    dsv3_mmap mm;
    *ids = NULL;
    if (dsv3_mmap_open(&mm, path) < 0) return -1;
    dsv3_npy_info info;
    int rc = dsv3_npy_parse(mm.data, mm.size, path, &info);
    if (rc == 0 && info.dtype == DSV3_NPY_F32) rc = dsv3_errorf("%s: token ids must be int32 or int64, found float32", path);
    if (rc == 0 && info.ndim != 2) rc = dsv3_errorf("%s: expected shape [rows, ids per row], found %d dimensions", path, info.ndim);
    if (rc == 0 && info.count > max_count)
        rc = dsv3_errorf("%s: %llu ids, more than the limit of %llu", path, (unsigned long long)info.count, (unsigned long long)max_count);
    if (rc == 0) {
        *rows = info.shape[0];
        *cols = info.shape[1];
        int32_t *out = dsv3_malloc(sizeof(int32_t) * (info.count ? info.count : 1));
        const unsigned char *p = mm.data + info.data_offset;
        for (uint64_t i = 0; i < info.count && rc == 0; i++) {
            int64_t v;
            if (info.dtype == DSV3_NPY_I32) { int32_t x; memcpy(&x, p + 4 * i, 4); v = x; }
            else memcpy(&v, p + 8 * i, 8);
            if (v < 0 || v > INT32_MAX)
                rc = dsv3_errorf("%s: token id %lld at row %llu, position %llu is negative or too large", path, (long long)v,
                                 (unsigned long long)(i / info.shape[1]), (unsigned long long)(i % info.shape[1]));
            out[i] = (int32_t)v;
        }
        if (rc) free(out);
        else *ids = out;
    }
    dsv3_mmap_close(&mm);
    return rc;
}
