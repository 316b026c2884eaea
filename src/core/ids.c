// Token id lists (see ids.h).
#include "core/ids.h"
#include "core/error.h"
#include "core/fileio.h"
#include "core/npy.h"
#include <stdlib.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int parse_npy(const unsigned char *u, size_t len, const char *name, size_t max_ids, int32_t **ids, size_t *n) {
    dsv3_npy_info info;
    if (dsv3_npy_parse(u, len, name, &info) != 0) return -1;
    if (info.dtype == DSV3_NPY_F32) return dsv3_errorf("%s: .npy of float32: token ids must be int32 or int64", name);
    if (!(info.ndim == 1 || (info.ndim == 2 && info.shape[0] == 1)))
        return dsv3_errorf("%s: .npy of token ids must have shape (T,) or (1, T)", name);
    if (info.count == 0) return dsv3_errorf("%s: no token ids", name);
    if (info.count > max_ids) return dsv3_errorf("%s: %llu token ids, more than the limit of %zu", name, (unsigned long long)info.count, max_ids);
    int32_t *out = dsv3_malloc(info.count * sizeof *out);
    const unsigned char *p = u + info.data_offset;
    for (uint64_t i = 0; i < info.count; i++) {
        int64_t v;
        if (info.dtype == DSV3_NPY_I32) {
            uint32_t x = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            v = (int32_t)x;
        } else {
            uint64_t x = 0;
            for (int b = 7; b >= 0; b--) x = x << 8 | p[8 * i + (uint64_t)b];
            v = (int64_t)x;
        }
        if (v < 0 || v > INT32_MAX) {
            free(out);
            return dsv3_errorf("%s: token id %lld at position %llu is not in [0, 2^31)", name, (long long)v, (unsigned long long)i);
        }
        out[i] = (int32_t)v;
    }
    *ids = out;
    *n = (size_t)info.count;
    return 0;
}

int dsv3_ids_parse(const char *buf, size_t len, const char *name, size_t max_ids, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    if (len >= 6 && memcmp(buf, "\x93NUMPY", 6) == 0) return parse_npy((const unsigned char *)buf, len, name, max_ids, ids, n);
    size_t cap = 0, k = 0, i = 0;
    int32_t *out = NULL;
    while (i < len && is_space(buf[i])) i++;
    while (i < len) {
        const size_t start = i;
        int64_t v = 0;
        int digits = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            v = v * 10 + (buf[i++] - '0');
            if (++digits > 10 || v > INT32_MAX) {
                free(out);
                return dsv3_errorf("%s: id %zu (at byte %zu) is above 2^31 - 1", name, k + 1, start);
            }
        }
        if (!digits) {
            free(out);
            if (buf[i] == '-') return dsv3_errorf("%s: id %zu (at byte %zu) is negative", name, k + 1, start);
            return dsv3_errorf("%s: expected a non-negative integer id at byte %zu (id %zu), found %s", name, start, k + 1,
                               buf[i] == ',' ? "a comma" : (unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f ? "a control or non-ASCII byte" : "another character");
        }
        if (k == max_ids) { free(out); return dsv3_errorf("%s: more than %zu token ids (the limit)", name, max_ids); }
        if (k == cap) cap = cap ? 2 * cap : 256, out = dsv3_realloc(out, cap * sizeof *out);
        out[k++] = (int32_t)v;
        // separator: whitespace, or one comma with optional whitespace around it; or the end
        while (i < len && is_space(buf[i])) i++;
        if (i < len && buf[i] == ',') {
            i++;
            while (i < len && is_space(buf[i])) i++;
            if (i == len) { free(out); return dsv3_errorf("%s: trailing comma after id %zu", name, k); }
        } else if (i < len && (buf[i] < '0' || buf[i] > '9')) {
            free(out);
            if (buf[i] == '-' && i > 0 && is_space(buf[i - 1])) return dsv3_errorf("%s: id %zu (at byte %zu) is negative", name, k + 1, i);
            return dsv3_errorf("%s: unexpected %s after id %zu (at byte %zu)", name,
                               (unsigned char)buf[i] >= 0x20 && (unsigned char)buf[i] < 0x7f ? "character" : "byte", k, i);
        }
    }
    if (k == 0) { free(out); return dsv3_errorf("%s: no token ids", name); }
    *ids = out;
    *n = k;
    return 0;
}

int dsv3_ids_read_file(const char *path, size_t max_ids, int32_t **ids, size_t *n) {
    size_t len;
    char *buf = dsv3_read_file_max(path, DSV3_IDS_FILE_MAX_BYTES, "an ids file", &len);
    if (!buf) return -1;
    int rc = dsv3_ids_parse(buf, len, strcmp(path, "-") == 0 ? "stdin" : path, max_ids, ids, n);
    free(buf);
    return rc;
}
