// dsv3_lm: the model loaded once for inference (include/dsv3.h).
#include "infer/infer_impl.h"
#include "core/error.h"
#include "core/fileio.h"
#include "train/data.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// eos_token_id of generation_config.json when present (an integer or a list: the first), else -2.
static int generation_config_eos(const char *dir, int *eos) {
    char *path = dsv3_path_join(dir, "generation_config.json");
    int rc = 0;
    if (!dsv3_file_exists(path)) { free(path); return 0; }
    size_t n = 0;
    char *txt = dsv3_read_file_max(path, 1 << 20, "generation config", &n);
    if (!txt) { free(path); return -1; }
    cJSON *root = cJSON_ParseWithLength(txt, n);
    if (!root || !cJSON_IsObject(root)) {
        rc = dsv3_errorf("%s: not a JSON object", path);
    } else {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
        if (cJSON_IsArray(e)) e = cJSON_GetArrayItem(e, 0);
        if (cJSON_IsNumber(e)) {
            if (e->valuedouble < 0 || e->valuedouble > 2147483647.0 || e->valuedouble != (double)(int)e->valuedouble)
                rc = dsv3_errorf("%s: eos_token_id %g is not a token id", path, e->valuedouble);
            else *eos = (int)e->valuedouble;
        } else if (e && !cJSON_IsNull(e)) {
            rc = dsv3_errorf("%s: eos_token_id must be an integer, a list of integers or null", path);
        }
    }
    cJSON_Delete(root);
    free(txt);
    free(path);
    return rc;
}

static uint64_t mix(uint64_t h, const void *p, size_t n) {
    uint64_t x = dsv3_fnv1a64(p, n);
    return (h ^ x) * 0x100000001b3ULL + (x >> 7);
}

// The config's shape fields, every tensor's name, dtype and shape, and the first and last 4 KiB of
// each tensor's bytes.
static uint64_t fingerprint(const dsv3_model *m) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const dsv3_config *c = &m->cfg;
    int shape[] = {c->vocab_size, c->hidden_size, c->intermediate_size, c->moe_intermediate_size, c->num_hidden_layers,
                   c->num_attention_heads, c->q_lora_rank, c->kv_lora_rank, c->qk_nope_head_dim, c->qk_rope_head_dim,
                   c->v_head_dim, c->n_routed_experts, c->n_shared_experts, c->num_experts_per_tok};
    h = mix(h, shape, sizeof shape);
    for (int i = 0; i < m->st.ntensors; i++) {
        const dsv3_st_tensor *t = &m->st.tensors[i];
        h = mix(h, t->name, strlen(t->name));
        h = mix(h, &t->dtype, sizeof t->dtype);
        h = mix(h, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        size_t k = t->nbytes < 4096 ? t->nbytes : 4096;
        h = mix(h, t->data, k);
        if (t->nbytes > 4096) h = mix(h, (const char *)t->data + t->nbytes - k, k);
    }
    return h;
}

dsv3_lm *dsv3_lm_load(const char *dir) {
    dsv3_lm *lm = dsv3_calloc(1, sizeof *lm);
    if (dsv3_model_load(&lm->m, dir) != 0) { free(lm); return NULL; }
    const dsv3_config *c = &lm->m.cfg;
    lm->eos_id = c->eos_token_id;
    if (generation_config_eos(dir, &lm->eos_id) != 0) { dsv3_model_free(&lm->m); free(lm); return NULL; }
    if (lm->eos_id >= c->vocab_size) lm->eos_id = -1;
    lm->n_mtp = lm->m.n_layers_loaded - c->num_hidden_layers;
    dsv3_fwd_init(&lm->f, &lm->m);
    for (int l = 0; l < lm->m.n_layers_loaded; l++) dsv3_fwd_kvb(&lm->f, l);
    lm->fingerprint = fingerprint(&lm->m);
    return lm;
}

void dsv3_lm_free(dsv3_lm *lm) {
    if (!lm) return;
    dsv3_fwd_free(&lm->f);
    dsv3_model_free(&lm->m);
    free(lm);
}

int dsv3_lm_vocab_size(const dsv3_lm *lm) { return lm->m.cfg.vocab_size; }
int dsv3_lm_hidden_size(const dsv3_lm *lm) { return lm->m.cfg.hidden_size; }
int dsv3_lm_eos_id(const dsv3_lm *lm) { return lm->eos_id; }
int dsv3_lm_max_positions(const dsv3_lm *lm) { return lm->m.cfg.max_position_embeddings; }
int dsv3_lm_mtp_layers(const dsv3_lm *lm) { return lm->n_mtp; }
uint64_t dsv3_lm_fingerprint(const dsv3_lm *lm) { return lm->fingerprint; }
