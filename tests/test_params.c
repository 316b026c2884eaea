// The parameter table (src/model/params.c) against the independent arithmetic of `dsv3 info`
// (src/model/counts.c) and the published DeepSeek-V3 size, for every shipped config; its names
// against the HF checkpoint layout; and the fp32 training model built from it.
#include "test.h"
#include "core/error.h"
#include "model/params.h"
#include "model/tmodel.h"

static void check_config(const char *path, int expect_671b) {
    dsv3_config c;
    if (dsv3_config_load(&c, path) != 0) { CHECK(0, "%s: %s", path, dsv3_error()); return; }
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    dsv3_param_table t;
    dsv3_param_table_build(&t, &c, 0);
    // main model: every tensor of the table (buffers, i.e. correction biases, included as counts.c does)
    CHECK((dsv3_count)t.total == k.total_params, "%s: table holds %zu values, counts.c says %llu", path, t.total,
          (unsigned long long)k.total_params);
    size_t nbuf = 0;
    for (int i = 0; i < t.n; i++)
        if (t.p[i].flags & DSV3_PF_BUFFER) nbuf += dsv3_param_numel(&t.p[i]);
    CHECK(t.trainable + nbuf == t.total, "%s: trainable %zu + buffers %zu != %zu", path, t.trainable, nbuf, t.total);
    if (expect_671b) CHECK(t.total == 671026419200ULL, "%s: %zu parameters, DeepSeek-V3 has 671,026,419,200", path, t.total);
    // MTP layers add exactly mtp_params (their embedding/head copies alias the main tensors)
    if (c.num_nextn_predict_layers > 0) {
        dsv3_param_table tm;
        dsv3_param_table_build(&tm, &c, c.num_nextn_predict_layers);
        CHECK((dsv3_count)(tm.total - t.total) == k.mtp_params, "%s: MTP layers add %zu, counts.c says %llu", path,
              tm.total - t.total, (unsigned long long)k.mtp_params);
        int alias = 0;
        for (int i = 0; i < tm.n; i++)
            if (tm.p[i].flags & DSV3_PF_ALIAS) {
                alias++;
                CHECK(tm.p[i].offset == tm.p[tm.p[i].alias].offset && tm.p[i].rows == tm.p[tm.p[i].alias].rows,
                      "%s: alias %s does not share storage", path, tm.p[i].name);
            }
        CHECK(alias == 2 * c.num_nextn_predict_layers, "%s: %d alias entries", path, alias);
        dsv3_param_table_free(&tm);
    }
    // names are unique, offsets disjoint and in order
    size_t off = 0;
    int bad_off = 0;
    for (int i = 0; i < t.n; i++) {
        if (t.p[i].flags & DSV3_PF_ALIAS) continue;
        bad_off += t.p[i].offset != off;
        off += dsv3_param_numel(&t.p[i]);
    }
    CHECK(bad_off == 0, "%s: %d entries out of place in the arena", path, bad_off);
    int dup = 0;
    if (t.n < 5000)
        for (int i = 0; i < t.n; i++)
            for (int j = i + 1; j < t.n; j++) dup += strcmp(t.p[i].name, t.p[j].name) == 0;
    CHECK(dup == 0, "%s: %d duplicate names", path, dup);
    dsv3_param_table_free(&t);
}

int main(void) {
    check_config("configs/deepseek-v3.json", 1);
    check_config("configs/deepseek-v2-lite.json", 0);
    check_config("configs/small.json", 0);
    check_config("configs/tiny.json", 0);
    check_config("configs/nano.json", 0);

    // spot names of the released checkpoint layout (DeepSeek-V3 model.safetensors.index.json)
    dsv3_config c;
    CHECK(dsv3_config_load(&c, "configs/deepseek-v3.json") == 0, "load");
    dsv3_param_table t;
    dsv3_param_table_build(&t, &c, 1);
    const char *names[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                           "model.layers.0.mlp.gate_proj.weight", "model.layers.3.mlp.experts.255.down_proj.weight",
                           "model.layers.3.mlp.gate.e_score_correction_bias", "model.layers.60.self_attn.kv_a_proj_with_mqa.weight",
                           "model.layers.61.eh_proj.weight", "model.layers.61.shared_head.head.weight",
                           "model.layers.61.embed_tokens.weight", "model.layers.61.mlp.shared_experts.up_proj.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(dsv3_param_find(&t, names[i]) >= 0, "missing %s", names[i]);
    int i = dsv3_param_find(&t, "model.layers.61.eh_proj.weight");
    CHECK(i >= 0 && t.p[i].rows == 7168 && t.p[i].cols == 14336 && (t.p[i].flags & DSV3_PF_DECAY), "eh_proj shape");
    i = dsv3_param_find(&t, "model.layers.3.mlp.gate.e_score_correction_bias");
    CHECK(i >= 0 && (t.p[i].flags & DSV3_PF_BUFFER) && !(t.p[i].flags & DSV3_PF_DECAY), "correction bias is a buffer");
    i = dsv3_param_find(&t, "model.layers.0.input_layernorm.weight");
    CHECK(i >= 0 && t.p[i].ndim == 1 && !(t.p[i].flags & DSV3_PF_DECAY), "norm gains: no decay");
    dsv3_param_table_free(&t);

    // random init: deterministic per seed, gains 1, std as asked
    CHECK(dsv3_config_load(&c, "configs/nano.json") == 0, "nano");
    dsv3_tmodel a, b;
    CHECK(dsv3_tmodel_init_random(&a, &c, 1, 0.02f, 7) == 0, "init");
    CHECK(dsv3_tmodel_init_random(&b, &c, 1, 0.02f, 7) == 0, "init");
    CHECK(memcmp(a.params, b.params, sizeof(float) * a.tab.total) == 0, "init is deterministic");
    double s2 = 0;
    size_t n = 0;
    for (int k = 0; k < a.tab.n; k++) {
        const dsv3_param *p = &a.tab.p[k];
        if (p->flags & DSV3_PF_ALIAS) continue;
        const float *w = a.params + p->offset;
        if (p->ndim == 2) { for (size_t j = 0; j < dsv3_param_numel(p); j++) s2 += (double)w[j] * w[j]; n += dsv3_param_numel(p); }
        else if (p->kind == DSV3_P_IN_NORM || p->kind == DSV3_P_NORM) CHECK(w[0] == 1.0f, "%s gain", p->name);
    }
    // std of ~1e5 normal draws: within 1% (the standard error of the std is 0.2%)
    CHECK(t_close(sqrt(s2 / n), 0.02, 0, 0.01), "init std %g", sqrt(s2 / n));
    dsv3_tmodel_free(&a);
    dsv3_tmodel_free(&b);
    return test_report("test_params");
}
