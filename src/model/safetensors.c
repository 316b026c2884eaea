// safetensors reader (mmap) and writer. Layout: u64-LE header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data
// section; offsets are relative to byte 8 + N.
#include "model/safetensors.h"
#include "core/error.h"
#include "core/text.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) // the format's own limit (100 MB)

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const dsv3_st_tensor *)a)->name, ((const dsv3_st_tensor *)b)->name);
}

typedef struct { size_t begin, end; const char *name; } st_span;
static int cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

// Reads a non-negative integer that JSON (a double in cJSON) carries exactly (< 2^53).
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d != floor(d) || d > 9007199254740992.0) return -1;
    *out = (uint64_t)d;
    return 0;
}

static void st_append(dsv3_st *st, int *cap, const dsv3_st_tensor *t) {
    if (st->ntensors == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        st->tensors = dsv3_realloc(st->tensors, (size_t)*cap * sizeof *st->tensors);
    }
    st->tensors[st->ntensors++] = *t;
}

// Parses and validates the header of st->files[fi], appending its tensors.
static int st_parse_file(dsv3_st *st, int fi, int *cap) {
    const dsv3_mmap *m = &st->files[fi];
    const char *path = m->path;
    if (m->size < 8) return dsv3_errorf("%s: truncated safetensors file (%zu bytes; the 8-byte header length is missing)", path, m->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | m->data[i];
    if (n > ST_MAX_HEADER) return dsv3_errorf("%s: header length %llu exceeds the 100 MB limit", path, (unsigned long long)n);
    if (n > m->size - 8)
        return dsv3_errorf("%s: header length %llu runs past the end of the file (%zu bytes)", path, (unsigned long long)n, m->size);
    if (n < 2 || m->data[8] != '{') return dsv3_errorf("%s: header is not a JSON object", path);
    const char *hdr = (const char *)m->data + 8;
    // cJSON would cut a name at \u0000 ("a\u0000b" read as "a"), aliasing another tensor's name.
    if (memchr(hdr, 0, (size_t)n)) return dsv3_errorf("%s: header contains a NUL byte", path);
    if (dsv3_json_has_nul_escape(hdr, (size_t)n))
        return dsv3_errorf("%s: header contains a \\u0000 escape (NUL characters in names or metadata are not supported)", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root) return dsv3_errorf("%s: header is not valid JSON (error at header byte %ld)", path, end ? (long)(end - hdr) : -1L);
    // Only whitespace (space padding) may follow the object.
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return dsv3_errorf("%s: header has trailing bytes after the JSON object (header byte %ld)", path, (long)(p - hdr));
        }
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return dsv3_errorf("%s: header is not a JSON object", path); }

    const unsigned char *base = m->data + 8 + n;
    const size_t data_size = m->size - 8 - (size_t)n;
    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next) count++;
    st_span *spans = dsv3_malloc((size_t)(count ? count : 1) * sizeof *spans);
    int nspans = 0, rc = -1;
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string;
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) { dsv3_errorf("%s: __metadata__ is not an object", path); goto fail; }
            for (const cJSON *kv = e->child; kv; kv = kv->next)
                if (!cJSON_IsString(kv)) { dsv3_errorf("%s: __metadata__ value '%s' is not a string", path, kv->string); goto fail; }
            continue;
        }
        if (!cJSON_IsObject(e)) { dsv3_errorf("%s: tensor '%s': entry is not an object", path, name); goto fail; }
        const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        dsv3_st_tensor t;
        memset(&t, 0, sizeof t);
        if (!cJSON_IsString(jd)) { dsv3_errorf("%s: tensor '%s': missing or non-string \"dtype\"", path, name); goto fail; }
        if (dsv3_dtype_parse(jd->valuestring, &t.dtype) < 0) {
            dsv3_errorf("%s: tensor '%s': unknown dtype '%s'", path, name, jd->valuestring);
            goto fail;
        }
        if (!cJSON_IsArray(js)) { dsv3_errorf("%s: tensor '%s': missing or non-array \"shape\"", path, name); goto fail; }
        int nd = cJSON_GetArraySize(js);
        if (nd > DSV3_ST_MAX_DIMS) { dsv3_errorf("%s: tensor '%s': %d dimensions (at most %d supported)", path, name, nd, DSV3_ST_MAX_DIMS); goto fail; }
        t.ndim = nd;
        uint64_t numel = 1;
        int overflow = 0, i = 0;
        for (const cJSON *d = js->child; d; d = d->next, i++) {
            uint64_t v;
            if (json_uint(d, &v) < 0) { dsv3_errorf("%s: tensor '%s': shape entries must be non-negative integers", path, name); goto fail; }
            t.shape[i] = (int64_t)v;
            if (v && numel > UINT64_MAX / v) overflow = 1;
            else numel *= v;
        }
        size_t es = dsv3_dtype_size(t.dtype);
        if (overflow || numel > (uint64_t)INT64_MAX / es) { dsv3_errorf("%s: tensor '%s': shape element count overflows", path, name); goto fail; }
        uint64_t b, en;
        if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || json_uint(cJSON_GetArrayItem(jo, 0), &b) < 0 ||
            json_uint(cJSON_GetArrayItem(jo, 1), &en) < 0) {
            dsv3_errorf("%s: tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers", path, name);
            goto fail;
        }
        if (b > en || en > data_size) {
            dsv3_errorf("%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%zu bytes)", path, name,
                        (unsigned long long)b, (unsigned long long)en, data_size);
            goto fail;
        }
        if (en - b != numel * es) {
            dsv3_errorf("%s: tensor '%s': %s shape needs %llu bytes but data_offsets span %llu", path, name,
                        dsv3_dtype_name(t.dtype), (unsigned long long)(numel * es), (unsigned long long)(en - b));
            goto fail;
        }
        t.name = dsv3_strdup(name);
        t.data = base + b;
        t.nbytes = (size_t)(en - b);
        t.file = fi;
        st_append(st, cap, &t);
        if (en > b) spans[nspans++] = (st_span){(size_t)b, (size_t)en, st->tensors[st->ntensors - 1].name};
    }
    if (nspans > 1) qsort(spans, nspans, sizeof *spans, cmp_span);
    for (int i = 1; i < nspans; i++)
        if (spans[i].begin < spans[i - 1].end) {
            dsv3_errorf("%s: tensors '%s' and '%s' overlap (data_offsets [%zu, %zu] and [%zu, %zu])", path, spans[i - 1].name,
                        spans[i].name, spans[i - 1].begin, spans[i - 1].end, spans[i].begin, spans[i].end);
            goto fail;
        }
    rc = 0;
fail:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

static void st_init(dsv3_st *st) { memset(st, 0, sizeof *st); }

// Maps `paths` and parses them; checks names are unique across files.
static int st_open_paths(dsv3_st *st, char **paths, int npaths) {
    st->files = dsv3_calloc(npaths ? npaths : 1, sizeof *st->files);
    int cap = 0;
    for (int i = 0; i < npaths; i++) {
        if (dsv3_mmap_open(&st->files[i], paths[i]) < 0) return -1;
        st->nfiles = i + 1;
        if (st_parse_file(st, i, &cap) < 0) return -1;
    }
    if (st->ntensors > 1) qsort(st->tensors, st->ntensors, sizeof *st->tensors, cmp_tensor_name);
    for (int i = 1; i < st->ntensors; i++)
        if (strcmp(st->tensors[i].name, st->tensors[i - 1].name) == 0) {
            const dsv3_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
            if (a->file == b->file) return dsv3_errorf("%s: tensor '%s' appears twice", st->files[a->file].path, a->name);
            return dsv3_errorf("%s: tensor '%s' is also in %s (duplicate across shards)", st->files[b->file].path, a->name,
                               st->files[a->file].path);
        }
    return 0;
}

int dsv3_st_open_file(dsv3_st *st, const char *path) {
    st_init(st);
    char *p = (char *)path;
    if (st_open_paths(st, &p, 1) < 0) { dsv3_st_close(st); return -1; }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int st_open_index(dsv3_st *st, const char *dir, const char *index_path) {
    size_t text_len = 0;
    char *text = dsv3_read_file_max(index_path, DSV3_READ_MAX_JSON, "a safetensors index", &text_len);
    if (!text) return -1;
    if (dsv3_json_has_nul_escape(text, text_len)) {
        free(text);
        return dsv3_errorf("%s: contains a \\u0000 escape (NUL characters in names are not supported)", index_path);
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return dsv3_errorf("%s: malformed JSON", index_path);
    int rc = -1, nfiles = 0;
    char **files = NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) { dsv3_errorf("%s: missing \"weight_map\" object", index_path); goto out; }
    int nent = cJSON_GetArraySize(wm);
    files = dsv3_malloc((size_t)(nent ? nent : 1) * sizeof *files);
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) { dsv3_errorf("%s: weight_map entry '%s' is not a file name", index_path, e->string); goto out; }
        const char *f = e->valuestring;
        if (!*f || f[0] == '/' || strstr(f, "..")) {
            dsv3_errorf("%s: weight_map entry '%s' names an unsafe file '%s'", index_path, e->string, f);
            goto out;
        }
        files[nfiles++] = (char *)f;
    }
    // distinct file names, sorted (sort then drop repeats: a pairwise scan is quadratic in the entries)
    if (nfiles > 1) qsort(files, nfiles, sizeof *files, cmp_str);
    int nuniq = 0;
    for (int i = 0; i < nfiles; i++)
        if (nuniq == 0 || strcmp(files[nuniq - 1], files[i]) != 0) files[nuniq++] = files[i];
    nfiles = nuniq;
    char **paths = dsv3_malloc((size_t)(nfiles ? nfiles : 1) * sizeof *paths);
    for (int i = 0; i < nfiles; i++) paths[i] = dsv3_path_join(dir, files[i]);
    int orc = st_open_paths(st, paths, nfiles);
    for (int i = 0; i < nfiles; i++) free(paths[i]);
    free(paths);
    if (orc < 0) goto out;
    // Every index entry must name a tensor that its file holds.
    for (const cJSON *e = wm->child; e; e = e->next) {
        const dsv3_st_tensor *t = dsv3_st_find(st, e->string);
        if (!t) { dsv3_errorf("%s: weight_map lists tensor '%s' in %s, but that file has no such tensor", index_path, e->string, e->valuestring); goto out; }
        const char *fp = st->files[t->file].path, *slash = strrchr(fp, '/');
        if (strcmp(slash ? slash + 1 : fp, e->valuestring) != 0) {
            dsv3_errorf("%s: weight_map lists tensor '%s' in %s, but it is in %s", index_path, e->string, e->valuestring, fp);
            goto out;
        }
    }
    rc = 0;
out:
    free(files);
    cJSON_Delete(root);
    return rc;
}

int dsv3_st_open_dir(dsv3_st *st, const char *dir) {
    st_init(st);
    int rc;
    char *index = dsv3_path_join(dir, "model.safetensors.index.json");
    char *single = dsv3_path_join(dir, "model.safetensors");
    if (dsv3_file_exists(index)) rc = st_open_index(st, dir, index);
    else if (dsv3_file_exists(single)) rc = st_open_paths(st, &single, 1);
    else {
        DIR *d = opendir(dir);
        if (!d) { free(index); free(single); return dsv3_errorf("%s: cannot open directory", dir); }
        int n = 0, cap = 0;
        char **paths = NULL;
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t len = strlen(de->d_name);
            if (len > 12 && strcmp(de->d_name + len - 12, ".safetensors") == 0) {
                if (n == cap) { cap = cap ? cap * 2 : 8; paths = dsv3_realloc(paths, (size_t)cap * sizeof *paths); }
                paths[n++] = dsv3_path_join(dir, de->d_name);
            }
        }
        closedir(d);
        if (n == 0) rc = dsv3_errorf("%s: no model.safetensors.index.json, model.safetensors or *.safetensors files", dir);
        else {
            qsort(paths, n, sizeof *paths, cmp_str);
            rc = st_open_paths(st, paths, n);
        }
        for (int i = 0; i < n; i++) free(paths[i]);
        free(paths);
    }
    free(index);
    free(single);
    if (rc < 0) dsv3_st_close(st);
    return rc;
}

void dsv3_st_close(dsv3_st *st) {
    for (int i = 0; i < st->ntensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->nfiles; i++) dsv3_mmap_close(&st->files[i]);
    free(st->files);
    memset(st, 0, sizeof *st);
}

const dsv3_st_tensor *dsv3_st_find(const dsv3_st *st, const char *name) {
    int lo = 0, hi = st->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

int64_t dsv3_st_numel(const dsv3_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

// ---------------------------------------------------------------------------------------------------
// Writer

typedef struct {
    char *name;
    dsv3_dtype dt;
    int ndim;
    int64_t shape[DSV3_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_wentry;

struct dsv3_st_writer {
    st_wentry *e;
    int n, cap;
    char **meta; // key, value pairs
    int nmeta;
};

dsv3_st_writer *dsv3_st_writer_new(void) {
    dsv3_st_writer *w = dsv3_calloc(1, sizeof *w);
    dsv3_st_writer_set_metadata(w, "format", "pt");
    return w;
}

void dsv3_st_writer_add(dsv3_st_writer *w, const char *name, dsv3_dtype dt, int ndim, const int64_t *shape, const void *data) {
    DSV3_ASSERT(ndim >= 0 && ndim <= DSV3_ST_MAX_DIMS);
    if (w->n == w->cap) { w->cap = w->cap ? w->cap * 2 : 64; w->e = dsv3_realloc(w->e, (size_t)w->cap * sizeof *w->e); }
    st_wentry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = dsv3_strdup(name);
    e->dt = dt;
    e->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) { DSV3_ASSERT(shape[i] >= 0); e->shape[i] = shape[i]; numel *= (size_t)shape[i]; }
    e->data = data;
    e->nbytes = numel * dsv3_dtype_size(dt);
}

void dsv3_st_writer_set_metadata(dsv3_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) { free(w->meta[2 * i + 1]); w->meta[2 * i + 1] = dsv3_strdup(value); return; }
    w->meta = dsv3_realloc(w->meta, (size_t)(w->nmeta + 1) * 2 * sizeof *w->meta);
    w->meta[2 * w->nmeta] = dsv3_strdup(key);
    w->meta[2 * w->nmeta + 1] = dsv3_strdup(value);
    w->nmeta++;
}

void dsv3_st_writer_free(dsv3_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->e);
    for (int i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->meta);
    free(w);
}

typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->s = dsv3_realloc(b->s, b->cap); }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        if (*p == '"' || *p == '\\') { tmp[0] = '\\'; tmp[1] = (char)*p; sb_put(b, tmp, 2); }
        else if (*p < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", *p); sb_put(b, tmp, 6); }
        else sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

// Data layout: larger element sizes first, then by name, so that every tensor starts at a multiple of
// its element size (the header is padded to 8 bytes). Header keys are written in name order.
static int cmp_layout(const void *a, const void *b) {
    const st_wentry *x = *(st_wentry *const *)a, *y = *(st_wentry *const *)b;
    size_t sx = dsv3_dtype_size(x->dt), sy = dsv3_dtype_size(y->dt);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cmp_wname(const void *a, const void *b) {
    return strcmp((*(st_wentry *const *)a)->name, (*(st_wentry *const *)b)->name);
}

int dsv3_st_writer_save(dsv3_st_writer *w, const char *path) {
    st_wentry **order = dsv3_malloc((size_t)(w->n ? w->n : 1) * sizeof *order);
    size_t *offset = dsv3_malloc((size_t)(w->n ? w->n : 1) * sizeof *offset);
    for (int i = 0; i < w->n; i++) order[i] = &w->e[i];
    qsort(order, w->n, sizeof *order, cmp_wname);
    for (int i = 1; i < w->n; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0) {
            dsv3_errorf("%s: tensor '%s' added twice", path, order[i]->name);
            free(order); free(offset);
            return -1;
        }
    for (int i = 0; i < w->n; i++)
        if (strcmp(order[i]->name, "__metadata__") == 0) { free(order); free(offset); return dsv3_errorf("%s: '__metadata__' is not a tensor name", path); }
    qsort(order, w->n, sizeof *order, cmp_layout);
    size_t pos = 0;
    for (int i = 0; i < w->n; i++) { offset[order[i] - w->e] = pos; pos += order[i]->nbytes; }
    qsort(order, w->n, sizeof *order, cmp_wname);

    sbuf h = {0};
    sb_str(&h, "{\"__metadata__\":{");
    for (int i = 0; i < w->nmeta; i++) {
        if (i) sb_str(&h, ",");
        sb_json_str(&h, w->meta[2 * i]);
        sb_str(&h, ":");
        sb_json_str(&h, w->meta[2 * i + 1]);
    }
    sb_str(&h, "}");
    for (int i = 0; i < w->n; i++) {
        const st_wentry *e = order[i];
        char tmp[96];
        sb_str(&h, ",");
        sb_json_str(&h, e->name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, dsv3_dtype_name(e->dt));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_str(&h, tmp);
        }
        size_t b = offset[e - w->e];
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%zu,%zu]}", b, b + e->nbytes);
        sb_str(&h, tmp);
    }
    sb_str(&h, "}");
    while (h.n % 8) sb_put(&h, " ", 1);

    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    dsv3_writer out;
    int rc = -1;
    if (dsv3_writer_open(&out, path) == 0) {
        dsv3_writer_write(&out, len8, 8);
        dsv3_writer_write(&out, h.s, h.n);
        qsort(order, w->n, sizeof *order, cmp_layout);
        for (int i = 0; i < w->n; i++) dsv3_writer_write(&out, order[i]->data, order[i]->nbytes);
        rc = dsv3_writer_commit(&out);
    }
    free(h.s);
    free(order);
    free(offset);
    return rc;
}
