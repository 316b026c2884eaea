// Training checkpoints (checkpoint.h).
#include "train/checkpoint.h"
#include "core/durable.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/safetensors.h"
#include "numerics/bf16.h"
#include "numerics/quant.h"
#include "train/data.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STATE_MAGIC "DSV3TRST"
#define STATE_VERSION 1u

const char *dsv3_save_dtype_name(dsv3_save_dtype d) { return d == DSV3_SAVE_BF16 ? "bf16" : d == DSV3_SAVE_FP8 ? "fp8" : "f32"; }

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        return dsv3_errorf("%s: exists and is not a folder", dir);
    }
    return dsv3_errorf("%s: cannot create folder: %s", dir, strerror(errno));
}

static int fp8_kind(dsv3_pkind k) {
    switch (k) {
    case DSV3_P_Q_A: case DSV3_P_Q_B: case DSV3_P_Q: case DSV3_P_KV_A: case DSV3_P_KV_B: case DSV3_P_O:
    case DSV3_P_GATE: case DSV3_P_UP: case DSV3_P_DOWN: case DSV3_P_EXP_GATE: case DSV3_P_EXP_UP: case DSV3_P_EXP_DOWN:
    case DSV3_P_SH_GATE: case DSV3_P_SH_UP: case DSV3_P_SH_DOWN: return 1;
    default: return 0;
    }
}

// config.json for the saved dtype: dtype/torch_dtype set, quantization_config added (fp8) or removed.
static char *config_for(const char *src, dsv3_save_dtype dt) {
    cJSON *j = cJSON_Parse(src);
    if (!j || !cJSON_IsObject(j)) { cJSON_Delete(j); dsv3_errorf("config.json: not a JSON object"); return NULL; }
    const char *name = dt == DSV3_SAVE_F32 ? "float32" : "bfloat16";
    int had = 0;
    const char *keys[2] = {"dtype", "torch_dtype"};
    for (int i = 0; i < 2; i++)
        if (cJSON_GetObjectItemCaseSensitive(j, keys[i])) {
            cJSON_ReplaceItemInObjectCaseSensitive(j, keys[i], cJSON_CreateString(name));
            had = 1;
        }
    if (!had) cJSON_AddStringToObject(j, "torch_dtype", name);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "quantization_config");
    if (dt == DSV3_SAVE_FP8) {
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        int bs[2] = {128, 128};
        cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(bs, 2));
        cJSON_AddItemToObject(j, "quantization_config", q);
    }
    char *out = cJSON_Print(j);
    cJSON_Delete(j);
    return out;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char *p = dsv3_path_join(dir, name);
    int rc = dsv3_durable_write_file(p, text, strlen(text));
    free(p);
    return rc;
}

static int copy_file(const char *src, const char *dst) {
    size_t n = 0;
    char *buf = dsv3_read_file(src, &n);
    if (!buf) return -1;
    int rc = dsv3_durable_write_file(dst, buf, n);
    free(buf);
    return rc;
}

typedef struct { void **p; int n, cap; } ptrs;
static void *keep(ptrs *k, void *p) {
    if (k->n == k->cap) { k->cap = k->cap ? 2 * k->cap : 256; k->p = dsv3_realloc(k->p, sizeof(void *) * (size_t)k->cap); }
    return k->p[k->n++] = p;
}

int dsv3_ckpt_write_model(const char *dir, const dsv3_tmodel *tm, const char *config_json, dsv3_save_dtype dt,
                          const char *tokenizer_dir, size_t max_shard_bytes) {
    if (mkdir_p(dir) < 0) return -1;
    if (!max_shard_bytes) max_shard_bytes = (size_t)4 << 30;
    char *cfg = config_for(config_json, dt);
    if (!cfg) return -1;
    int rc = write_text(dir, "config.json", cfg);
    free(cfg);
    if (rc < 0) return -1;
    char gen[256];
    snprintf(gen, sizeof gen, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"do_sample\": true,\n  \"temperature\": 0.6,\n  \"top_p\": 0.95\n}\n",
             tm->cfg.bos_token_id, tm->cfg.eos_token_id);
    if (write_text(dir, "generation_config.json", gen) < 0) return -1;
    if (tokenizer_dir) {
        const char *files[2] = {"tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 2; i++) {
            char *s = dsv3_path_join(tokenizer_dir, files[i]), *d = dsv3_path_join(dir, files[i]);
            struct stat st;
            int r = stat(s, &st) == 0 ? copy_file(s, d) : 0;
            free(s); free(d);
            if (r < 0) return -1;
        }
    }
    // group tensors into shards in table order
    const dsv3_param_table *t = &tm->tab;
    ptrs keepers = {0};
    int nshard = 1;
    size_t cur = 0;
    int *shard_of = dsv3_malloc(sizeof(int) * (size_t)(t->n + 1));
    size_t *bytes_of = dsv3_malloc(sizeof(size_t) * (size_t)(t->n + 1));
    for (int i = 0; i < t->n; i++) {
        const dsv3_param *p = &t->p[i];
        const size_t n = dsv3_param_numel(p);
        size_t b = p->kind == DSV3_P_CORR_BIAS || dt == DSV3_SAVE_F32 ? 4 * n : 2 * n;
        if (dt == DSV3_SAVE_FP8 && fp8_kind(p->kind)) b = n + 4 * (size_t)((p->rows + 127) / 128) * ((p->cols + 127) / 128);
        if (cur > 0 && cur + b > max_shard_bytes) { nshard++; cur = 0; }
        shard_of[i] = nshard - 1;
        bytes_of[i] = b;
        cur += b;
    }
    cJSON *wmap = cJSON_CreateObject();
    size_t total = 0;
    for (int s = 0; s < nshard && rc == 0; s++) {
        dsv3_st_writer *w = dsv3_st_writer_new();
        dsv3_st_writer_set_metadata(w, "format", "pt");
        char fname[64];
        if (nshard == 1) snprintf(fname, sizeof fname, "model.safetensors");
        else snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, nshard);
        for (int i = 0; i < t->n; i++) {
            if (shard_of[i] != s) continue;
            const dsv3_param *p = &t->p[i];
            const float *src = tm->params + p->offset;
            const size_t n = dsv3_param_numel(p);
            int64_t shape[2] = {p->rows, p->cols};
            total += bytes_of[i];
            cJSON_AddStringToObject(wmap, p->name, fname);
            if (p->kind == DSV3_P_CORR_BIAS || dt == DSV3_SAVE_F32) {
                dsv3_st_writer_add(w, p->name, DSV3_F32, p->ndim, shape, src);
            } else if (dt == DSV3_SAVE_FP8 && fp8_kind(p->kind)) {
                const int N = (int)p->rows, K = (int)p->cols, nb = (N + 127) / 128, kb = (K + 127) / 128;
                uint8_t *q = keep(&keepers, dsv3_malloc(n ? n : 1));
                float *sc = keep(&keepers, dsv3_malloc(sizeof(float) * (size_t)nb * kb));
                dsv3_quant_128x128_e4m3(q, sc, src, N, K, DSV3_SCALE_AMAX);
                dsv3_st_writer_add(w, p->name, DSV3_F8_E4M3, 2, shape, q);
                char sname[128];
                snprintf(sname, sizeof sname, "%s_scale_inv", p->name);
                int64_t ss[2] = {nb, kb};
                char *sn = keep(&keepers, dsv3_strdup(sname));
                dsv3_st_writer_add(w, sn, DSV3_F32, 2, ss, sc);
                cJSON_AddStringToObject(wmap, sn, fname);
            } else {
                uint16_t *h = keep(&keepers, dsv3_malloc(sizeof(uint16_t) * (n ? n : 1)));
                for (size_t k = 0; k < n; k++) h[k] = dsv3_f32_to_bf16(src[k]);
                dsv3_st_writer_add(w, p->name, DSV3_BF16, p->ndim, shape, h);
            }
        }
        char *path = dsv3_path_join(dir, fname);
        rc = dsv3_st_writer_save(w, path);
        if (rc == 0) rc = dsv3_fsync_parent(path);
        free(path);
        dsv3_st_writer_free(w);
    }
    if (rc == 0 && nshard > 1) {
        cJSON *idx = cJSON_CreateObject(), *meta = cJSON_CreateObject();
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        cJSON_AddItemToObject(idx, "metadata", meta);
        cJSON_AddItemToObject(idx, "weight_map", wmap);
        wmap = NULL;
        char *txt = cJSON_Print(idx);
        rc = write_text(dir, "model.safetensors.index.json", txt);
        free(txt);
        cJSON_Delete(idx);
    }
    cJSON_Delete(wmap);
    for (int i = 0; i < keepers.n; i++) free(keepers.p[i]);
    free(keepers.p);
    free(shard_of);
    free(bytes_of);
    return rc;
}

// ---- trainer state ------------------------------------------------------------------------------

static uint64_t fnv_update(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
    return h;
}

int dsv3_ckpt_write_state(const char *dir, const char *json, const dsv3_tmodel *tm, const dsv3_adamw *o) {
    if (mkdir_p(dir) < 0) return -1;
    const size_t n = tm->tab.total, es = o->m ? 4 : 2;
    const void *m = o->m ? (const void *)o->m : (const void *)o->mb, *v = o->v ? (const void *)o->v : (const void *)o->vb;
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv_update(h, tm->params, 4 * n);
    h = fnv_update(h, m, es * n);
    h = fnv_update(h, v, es * n);
    cJSON *j = cJSON_Parse(json);
    if (!j) return dsv3_errorf("trainer state: internal JSON does not parse");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    cJSON_AddStringToObject(j, "arrays_fnv1a64", hex);
    cJSON_AddNumberToObject(j, "arena_floats", (double)n);
    cJSON_AddStringToObject(j, "moments", o->m ? "f32" : "bf16");
    cJSON_AddNumberToObject(j, "adam_step", (double)o->step);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char *path = dsv3_path_join(dir, "trainer_state.bin");
    dsv3_durable w;
    int rc = dsv3_durable_open(&w, path);
    if (rc == 0) {
        uint32_t hdr[2] = {STATE_VERSION, (uint32_t)strlen(txt)};
        dsv3_durable_write(&w, STATE_MAGIC, 8);
        dsv3_durable_write(&w, hdr, sizeof hdr);
        dsv3_durable_write(&w, txt, strlen(txt));
        dsv3_durable_write(&w, tm->params, 4 * n);
        dsv3_durable_write(&w, m, es * n);
        dsv3_durable_write(&w, v, es * n);
        rc = dsv3_durable_commit(&w);
    }
    free(path);
    free(txt);
    return rc;
}

int dsv3_ckpt_read_state(const char *dir, char **json, dsv3_tmodel *tm, dsv3_adamw *o) {
    char *path = dsv3_path_join(dir, "trainer_state.bin");
    dsv3_mmap mm;
    int rc = dsv3_mmap_open(&mm, path);
    *json = NULL;
    if (rc < 0) { free(path); return -1; }
    uint32_t hdr[2] = {0, 0};
    if (mm.size < 16 || memcmp(mm.data, STATE_MAGIC, 8) != 0) {
        rc = dsv3_errorf("%s: not a dsv3 trainer state (bad magic)", path);
        goto done;
    }
    memcpy(hdr, mm.data + 8, sizeof hdr);
    if (hdr[0] != STATE_VERSION) { rc = dsv3_errorf("%s: trainer state version %u, this build reads %u", path, hdr[0], STATE_VERSION); goto done; }
    if (16 + (size_t)hdr[1] > mm.size) { rc = dsv3_errorf("%s: truncated (header of %u bytes)", path, hdr[1]); goto done; }
    char *txt = dsv3_malloc((size_t)hdr[1] + 1);
    memcpy(txt, mm.data + 16, hdr[1]);
    txt[hdr[1]] = 0;
    cJSON *j = cJSON_Parse(txt);
    const cJSON *nf = j ? cJSON_GetObjectItemCaseSensitive(j, "arena_floats") : NULL;
    const cJSON *mo = j ? cJSON_GetObjectItemCaseSensitive(j, "moments") : NULL;
    const cJSON *hx = j ? cJSON_GetObjectItemCaseSensitive(j, "arrays_fnv1a64") : NULL;
    const cJSON *as = j ? cJSON_GetObjectItemCaseSensitive(j, "adam_step") : NULL;
    if (!cJSON_IsNumber(nf) || !cJSON_IsString(mo) || !cJSON_IsString(hx) || !cJSON_IsNumber(as) || !(nf->valuedouble >= 0) ||
        !(nf->valuedouble <= 9007199254740992.0) || !(as->valuedouble >= 0) || !(as->valuedouble <= 9007199254740992.0) ||
        (strcmp(mo->valuestring, "f32") && strcmp(mo->valuestring, "bf16"))) {
        rc = dsv3_errorf("%s: trainer state header is malformed", path);
        cJSON_Delete(j); free(txt);
        goto done;
    }
    const size_t n = tm->tab.total;
    const int bf = strcmp(mo->valuestring, "bf16") == 0;
    const size_t es = bf ? 2 : 4;
    if ((size_t)nf->valuedouble != n) {
        rc = dsv3_errorf("%s: holds %.0f parameters, the model of this run has %zu (another config?)", path, nf->valuedouble, n);
    } else if (mm.size != 16 + (size_t)hdr[1] + 4 * n + 2 * es * n) {
        rc = dsv3_errorf("%s: size %zu bytes, expected %zu (truncated or corrupt)", path, mm.size, 16 + (size_t)hdr[1] + 4 * n + 2 * es * n);
    } else {
        const unsigned char *p = mm.data + 16 + hdr[1];
        uint64_t h = fnv_update(0xcbf29ce484222325ULL, p, 4 * n + 2 * es * n);
        char want[17];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)h);
        if (strcmp(want, hx->valuestring) != 0) {
            rc = dsv3_errorf("%s: checksum %s differs from the recorded %s (corrupt)", path, want, hx->valuestring);
        } else {
            memcpy(tm->params, p, 4 * n);
            dsv3_adamw_free(o);
            dsv3_adamw_init(o, n, bf);
            memcpy(bf ? (void *)o->mb : (void *)o->m, p + 4 * n, es * n);
            memcpy(bf ? (void *)o->vb : (void *)o->v, p + 4 * n + es * n, es * n);
            o->step = (long)as->valuedouble;
        }
    }
    cJSON_Delete(j);
    if (rc == 0) *json = txt;
    else free(txt);
done:
    dsv3_mmap_close(&mm);
    free(path);
    return rc;
}
