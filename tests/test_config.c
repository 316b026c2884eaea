// config.json reader and `dsv3 info` counts.
// Expected counts are exact arithmetic from the tensor shapes (spec deepseek-v3.md §3.5), checked
// against the published headline numbers (671B total, 37B active, 70,272 KV bytes/token).
#include "test.h"
#include "core/error.h"
#include "model/config.h"
#include "core/fileio.h"
#include <stdint.h>

#define D(x) ((double)(x)) // a count, for messages

static int parse(dsv3_config *c, const char *json) { return dsv3_config_parse(c, json, "test.json"); }

// A config that must be refused with a message naming the file and containing `want` (usually the field).
static void expect_bad(const char *json, const char *want) {
    dsv3_config c;
    dsv3_error_clear();
    int rc = parse(&c, json);
    CHECK(rc == -1, "should fail (%s): %s", want, json);
    CHECK(strstr(dsv3_error(), "test.json") != NULL, "message names the file: %s", dsv3_error());
    CHECK(strstr(dsv3_error(), want) != NULL, "message mentions '%s': %s", want, dsv3_error());
}

static void test_v3_real(void) {
    dsv3_config c;
    CHECK(dsv3_config_load(&c, "configs/deepseek-v3.json") == 0, "load v3: %s", dsv3_error());
    CHECK(strcmp(c.model_type, "deepseek_v3") == 0, "model_type");
    CHECK(c.vocab_size == 129280 && c.hidden_size == 7168 && c.intermediate_size == 18432 && c.moe_intermediate_size == 2048,
          "dims");
    CHECK(c.num_hidden_layers == 61 && c.num_nextn_predict_layers == 1 && c.first_k_dense_replace == 3, "layers");
    CHECK(c.num_attention_heads == 128 && c.q_lora_rank == 1536 && c.kv_lora_rank == 512 && c.qk_nope_head_dim == 128 &&
              c.qk_rope_head_dim == 64 && c.v_head_dim == 128 && dsv3_qk_head_dim(&c) == 192, "attention dims");
    CHECK(c.n_routed_experts == 256 && c.n_shared_experts == 1 && c.num_experts_per_tok == 8 && c.n_group == 8 &&
              c.topk_group == 4, "experts");
    CHECK(c.scoring == DSV3_SCORE_SIGMOID && c.use_correction_bias && c.norm_topk_prob && c.routed_scaling_factor == 2.5f,
          "routing");
    CHECK(c.rope_type == DSV3_ROPE_YARN && c.rope_theta == 10000 && c.rope_factor == 40 &&
              c.original_max_position_embeddings == 4096 && c.beta_fast == 32 && c.beta_slow == 1 && c.mscale == 1.0 &&
              c.mscale_all_dim == 1.0 && c.max_position_embeddings == 163840 && c.rope_interleave == 1, "rope");
    CHECK(c.fp8 && c.weight_block_rows == 128 && c.weight_block_cols == 128 && !c.scale_fmt_ue8m0, "fp8");
    CHECK(c.rms_norm_eps == 1e-6f && !c.attention_bias && !c.tie_word_embeddings && c.bos_token_id == 0 && c.eos_token_id == 1,
          "misc");
    CHECK(strcmp(c.dtype, "bfloat16") == 0 && strcmp(c.topk_method, "noaux_tc") == 0, "dtype / topk_method strings");
    CHECK(!dsv3_layer_is_moe(&c, 2) && dsv3_layer_is_moe(&c, 3) && dsv3_layer_is_moe(&c, 61), "layer kinds");

    // Counts: exact integer arithmetic from the shapes (spec §3.5).
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    CHECK(k.attn_params_per_layer == 187107328u, "attention per layer %.0f", D(k.attn_params_per_layer));
    CHECK(k.dense_ffn_params_per_layer == 396361728u, "dense FFN %.0f", D(k.dense_ffn_params_per_layer));
    CHECK(k.expert_params == 44040192u, "expert %.0f", D(k.expert_params));
    CHECK(k.moe_ffn_params_per_layer == 11320164608u, "MoE layer %.0f", D(k.moe_ffn_params_per_layer));
    CHECK(k.embed_params == 926679040u && k.head_params == 926679040u, "embedding / head");
    // total = embedding + head + final norm + 61 x (attention + 2 block norms) + 3 dense + 58 MoE
    const uint64_t d = 7168, total = 2 * 926679040ull + d + 61 * (187107328ull + 2 * d) + 3 * 396361728ull + 58 * 11320164608ull;
    CHECK(k.total_params == total, "total %.0f vs %.0f", D(k.total_params), (double)total);
    CHECK(total == 671026419200ull, "671,026,419,200 total: %.0f", (double)total);
    // active: 248 unused routed experts in each of 58 MoE layers
    CHECK(k.active_params == total - 58 * 248 * 44040192ull, "active %.0f", D(k.active_params));
    CHECK(t_close(D(k.active_params), 37.55e9, 0.005e9, 0), "37.55B active: %.0f", D(k.active_params));
    // MTP: enorm + hnorm + shared_head.norm + eh_proj (d x 2d) + a MoE decoder layer = 11.61B (spec §3.5)
    CHECK(k.mtp_params == 3 * d + 2 * d * d + 187107328ull + 2 * d + 11320164608ull, "mtp %.0f", D(k.mtp_params));
    CHECK(t_close(D(k.mtp_params), 11.61e9, 0.005e9, 0), "11.61B MTP");
    CHECK(t_close(D(k.mtp_active_params), 2.54e9, 0.005e9, 0), "2.54B MTP active (spec §3.5): %.0f", D(k.mtp_active_params));
    CHECK(k.kv_bytes_per_token == 70272u, "MLA KV bytes %.0f", D(k.kv_bytes_per_token));
    CHECK(k.mha_kv_bytes_per_token == 128u * (192 + 128) * 2 * 61, "MHA KV bytes %.0f", D(k.mha_kv_bytes_per_token));
    // FLOPs: 2 x (active - embedding - vector params). Vector params: final norm, 61 x (2d + q_lora + kv_lora)
    // block/inner norms, 58 x 256 correction biases.
    const uint64_t vec = d + 61 * (2 * d + 1536 + 512) + 58 * 256;
    CHECK(k.active_matmul_params == k.active_params - 926679040u - vec, "active matmul %.0f", D(k.active_matmul_params));
    CHECK(k.flops_per_token == 2 * k.active_matmul_params, "flops");
    CHECK(k.attn_flops_per_ctx_token == 2u * 61 * 128 * (192 + 128), "attention flops per position");
}

// Counts past 2^64 (and far past 2^53, where doubles lose integers) stay exact: the largest
// dimensions the config reader accepts. Expected values are Python integer arithmetic on the same
// shapes (d = Im = 2^30 - 1, V = 2^31 - 1, 65536 experts, 100000 layers, H = 1).
static void test_huge_counts_exact(void) {
    const char *json = "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 1073741823, \"vocab_size\": 2147483647, "
                       "\"moe_intermediate_size\": 1073741823, \"n_routed_experts\": 65536, \"n_shared_experts\": 1, "
                       "\"n_group\": 1, \"topk_group\": 1, \"num_experts_per_tok\": 8, \"num_hidden_layers\": 100000, "
                       "\"first_k_dense_replace\": 0, \"num_attention_heads\": 1, \"q_lora_rank\": null, "
                       "\"kv_lora_rank\": 1, \"qk_nope_head_dim\": 1, \"qk_rope_head_dim\": 2, \"v_head_dim\": 1}";
    dsv3_config c;
    CHECK(parse(&c, json) == 0, "huge config parses: %s", dsv3_error());
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    char b[48];
    CHECK(strcmp(dsv3_count_str(b, sizeof b, k.expert_params), "3458764507378089987") == 0, "expert %s", b);
    CHECK(strcmp(dsv3_count_str(b, sizeof b, k.moe_ffn_params_per_layer), "226677049590406627655683") == 0, "MoE layer %s", b);
    CHECK(strcmp(dsv3_count_str(b, sizeof b, k.total_params), "22667704963653315146267978785") == 0, "total %s", b);
    CHECK(strcmp(dsv3_count_str(b, sizeof b, k.active_params), "3112899706167079454378785") == 0, "active %s", b);
    CHECK(strcmp(dsv3_count_str(b, sizeof b, 0), "0") == 0, "zero prints as 0");
    // the identity total = embedding + head + final norm + L x layer holds exactly
    const dsv3_count layer = k.attn_params_per_layer + 2 * (dsv3_count)c.hidden_size + k.moe_ffn_params_per_layer;
    CHECK(k.total_params == k.embed_params + k.head_params + (dsv3_count)c.hidden_size + 100000 * layer, "total identity");
}

static void test_v2_lite(void) {
    dsv3_config c;
    CHECK(dsv3_config_load(&c, "configs/deepseek-v2-lite.json") == 0, "load v2-lite: %s", dsv3_error());
    CHECK(strcmp(c.model_type, "deepseek_v2") == 0 && c.q_lora_rank == 0 && c.kv_lora_rank == 512, "v2 attention");
    CHECK(c.scoring == DSV3_SCORE_SOFTMAX && !c.use_correction_bias && !c.norm_topk_prob && c.routed_scaling_factor == 1.0f,
          "v2 routing");
    CHECK(c.n_routed_experts == 64 && c.n_shared_experts == 2 && c.num_experts_per_tok == 6 && c.n_group == 1 &&
              c.topk_group == 1 && c.first_k_dense_replace == 1 && c.num_nextn_predict_layers == 0, "v2 experts");
    CHECK(c.rope_type == DSV3_ROPE_YARN && c.mscale == 0.707 && c.mscale_all_dim == 0.707 && c.rope_factor == 40, "v2 yarn");
    CHECK(c.bos_token_id == 100000 && c.eos_token_id == 100001 && !c.fp8, "v2 misc");
    dsv3_counts k;
    dsv3_config_counts(&c, &k);
    // DeepSeek-V2 paper: V2-Lite has 15.7B total parameters.
    CHECK(t_close(D(k.total_params), 15.7e9, 0.05e9, 0), "V2-Lite 15.7B total: %.0f", D(k.total_params));
    CHECK(k.kv_bytes_per_token == 576u * 2 * 27, "V2-Lite KV bytes");
    CHECK(k.mtp_params == 0, "no MTP");
}

static void test_small_configs(void) {
    // The shipped small configs parse, and have the sizes docs/MODEL.md promises.
    dsv3_config c;
    dsv3_counts k;
    CHECK(dsv3_config_load(&c, "configs/nano.json") == 0, "nano: %s", dsv3_error());
    dsv3_config_counts(&c, &k);
    CHECK(D(k.total_params) < 1e6 && c.num_nextn_predict_layers == 1, "nano is tiny with MTP");
    CHECK(dsv3_config_load(&c, "configs/tiny.json") == 0, "tiny: %s", dsv3_error());
    dsv3_config_counts(&c, &k);
    CHECK(D(k.total_params) > 5e6 && D(k.total_params) < 20e6, "tiny ~10M: %.0f", D(k.total_params));
    CHECK(dsv3_config_load(&c, "configs/small.json") == 0, "small: %s", dsv3_error());
    dsv3_config_counts(&c, &k);
    CHECK(D(k.total_params) >= 0.5e9 && D(k.total_params) <= 1e9, "small 0.5-1B: %.0f", D(k.total_params));
    CHECK(c.num_nextn_predict_layers == 1 && c.scoring == DSV3_SCORE_SIGMOID && c.n_group > 1, "small: MTP + sigmoid groups");
}

static void test_forms_and_defaults(void) {
    dsv3_config c;
    // HF defaults (DeepseekV3Config): no rope scaling, max_position_embeddings 4096, q_lora 1536, no MTP.
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\"}") == 0, "minimal v3: %s", dsv3_error());
    CHECK(c.hidden_size == 7168 && c.max_position_embeddings == 4096 && c.rope_type == DSV3_ROPE_DEFAULT &&
              c.rope_theta == 10000 && c.q_lora_rank == 1536 && c.num_nextn_predict_layers == 0 && c.rope_interleave == 1 &&
              c.num_key_value_heads == 128 && !c.fp8 && c.use_correction_bias && c.n_group == 8, "v3 defaults");
    // transformers 5: rope_parameters + dtype; head_dim (= qk_rope_head_dim in HF) is not the head size.
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"head_dim\": 64, \"qk_head_dim\": 192, \"dtype\": \"float32\","
                    " \"max_position_embeddings\": 2048, \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 50000,"
                    " \"factor\": 8, \"original_max_position_embeddings\": 256, \"beta_fast\": 16, \"beta_slow\": 2,"
                    " \"mscale_all_dim\": 0.5}, \"rope_interleave\": false}") == 0,
          "v5 form: %s", dsv3_error());
    CHECK(c.rope_type == DSV3_ROPE_YARN && c.rope_theta == 50000 && c.rope_factor == 8 &&
              c.original_max_position_embeddings == 256 && c.beta_fast == 16 && c.beta_slow == 2 && c.mscale == 0 &&
              c.mscale_all_dim == 0.5 && c.rope_interleave == 0 && strcmp(c.dtype, "float32") == 0, "v5 rope_parameters");
    CHECK(c.qk_nope_head_dim == 128 && c.qk_rope_head_dim == 64 && c.v_head_dim == 128, "head_dim ignored");
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000}}") == 0 &&
              c.rope_type == DSV3_ROPE_DEFAULT && c.rope_theta == 1e6, "v5 default rope");
    // v4 rope_scaling with "rope_type" instead of "type"; factor derived from the lengths when absent.
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"max_position_embeddings\": 8192, \"rope_theta\": 20000,"
                    " \"rope_scaling\": {\"rope_type\": \"yarn\", \"original_max_position_embeddings\": 1024}}") == 0 &&
              c.rope_type == DSV3_ROPE_YARN && c.rope_factor == 8 && c.rope_theta == 20000 && c.beta_fast == 32 && c.beta_slow == 1,
          "rope_scaling.rope_type, derived factor: %s", dsv3_error());
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"rope_scaling\": null, \"q_lora_rank\": null, \"torch_dtype\": \"bfloat16\","
                    " \"eos_token_id\": [1, 2], \"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [64, 32],"
                    " \"scale_fmt\": \"ue8m0\"}}") == 0, "nulls: %s", dsv3_error());
    CHECK(c.q_lora_rank == 0 && c.rope_type == DSV3_ROPE_DEFAULT && c.eos_token_id == 1 && c.fp8 && c.weight_block_rows == 64 &&
              c.weight_block_cols == 32 && c.scale_fmt_ue8m0 && strcmp(c.dtype, "bfloat16") == 0, "null q_lora, block size");
    // v2: softmax and no correction bias unless noaux_tc; greedy means one group
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6}") == 0 && c.scoring == DSV3_SCORE_SOFTMAX &&
              !c.use_correction_bias && c.max_position_embeddings == 2048, "v2 defaults: %s", dsv3_error());
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"n_routed_experts\": 160, \"n_group\": 8,"
                    " \"topk_group\": 3, \"topk_method\": \"group_limited_greedy\"}") == 0 && c.n_group == 8 && c.topk_group == 3,
          "v2 group_limited_greedy");
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"n_group\": 8, \"topk_group\": 3}") == 0 &&
              c.n_group == 1 && c.topk_group == 1, "v2 greedy ignores groups");
    CHECK(parse(&c, "{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"topk_method\": \"noaux_tc\","
                    " \"scoring_func\": \"sigmoid\", \"n_group\": 4, \"topk_group\": 2}") == 0 && c.use_correction_bias &&
              c.scoring == DSV3_SCORE_SIGMOID, "v2 noaux_tc");
    CHECK(dsv3_config_load(&c, "tests/fixtures/bad/does-not-exist.json") == -1 && strstr(dsv3_error(), "does-not-exist.json"),
          "missing file");
}

static void test_bad(void) {
#define V3 "{\"model_type\": \"deepseek_v3\", "
    expect_bad("{\"model_type\": \"deepseek_v3\",", "malformed JSON");
    expect_bad("", "malformed JSON");
    expect_bad("[1, 2]", "top level");
    expect_bad("{\"hidden_size\": 16}", "model_type");
    expect_bad("{\"model_type\": \"llama\"}", "model_type");
    expect_bad("{\"model_type\": 3}", "model_type");
    expect_bad(V3 "\"hidden_size\": 0}", "hidden_size");
    expect_bad(V3 "\"hidden_size\": 16, \"hidden_size\": 32}", "hidden_size");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"factor\": 8}}", "factor");
    expect_bad(V3 "\"hidden_size\": -8}", "hidden_size");
    expect_bad(V3 "\"hidden_size\": \"big\"}", "hidden_size");
    expect_bad(V3 "\"hidden_size\": 7.5}", "hidden_size");
    expect_bad(V3 "\"hidden_size\": 1e999}", "hidden_size");
    expect_bad(V3 "\"hidden_size\": NaN}", "malformed JSON"); // not JSON at all
    expect_bad(V3 "\"vocab_size\": [1]}", "vocab_size");
    expect_bad(V3 "\"num_attention_heads\": 0}", "num_attention_heads");
    expect_bad(V3 "\"num_key_value_heads\": 8}", "num_key_value_heads");
    expect_bad(V3 "\"n_routed_experts\": 100}", "n_routed_experts"); // not divisible by 8 groups
    expect_bad(V3 "\"n_routed_experts\": 8, \"num_experts_per_tok\": 1}", "n_group"); // 1 expert per group, top-2 sums
    expect_bad(V3 "\"topk_group\": 9}", "topk_group");
    expect_bad(V3 "\"topk_group\": 0}", "topk_group");
    expect_bad(V3 "\"num_experts_per_tok\": 129}", "num_experts_per_tok"); // > 4 groups x 32
    expect_bad(V3 "\"num_experts_per_tok\": 0}", "num_experts_per_tok");
    expect_bad(V3 "\"qk_rope_head_dim\": 63}", "qk_rope_head_dim");
    expect_bad(V3 "\"moe_layer_freq\": 2}", "moe_layer_freq");
    expect_bad(V3 "\"hidden_act\": \"gelu\"}", "hidden_act");
    expect_bad(V3 "\"scoring_func\": \"relu\"}", "scoring_func");
    expect_bad(V3 "\"topk_method\": \"random\"}", "topk_method");
    expect_bad(V3 "\"rms_norm_eps\": 0}", "rms_norm_eps");
    expect_bad(V3 "\"rms_norm_eps\": -1e-6}", "rms_norm_eps");
    expect_bad(V3 "\"routed_scaling_factor\": -2.5}", "routed_scaling_factor");
    expect_bad(V3 "\"rope_theta\": 0}", "rope_theta");
    expect_bad(V3 "\"norm_topk_prob\": \"yes\"}", "norm_topk_prob");
    expect_bad(V3 "\"max_position_embeddings\": 0}", "max_position_embeddings");
    expect_bad(V3 "\"num_hidden_layers\": 0}", "num_hidden_layers");
    expect_bad(V3 "\"num_nextn_predict_layers\": -1}", "num_nextn_predict_layers");
    expect_bad(V3 "\"first_k_dense_replace\": -1}", "first_k_dense_replace");
    expect_bad(V3 "\"num_attention_heads\": 100000000}", "too large");
    expect_bad(V3 "\"n_routed_experts\": 1048576, \"n_group\": 1, \"topk_group\": 1}", "'n_routed_experts'"); // router flags on the stack
    expect_bad(V3 "\"hidden_size\": 1073741824}", "'hidden_size'");
    expect_bad("{\"model_type\": \"deepseek_v3\", \"hidden_act\": \"silu\\u0000gelu\"}", "u0000"); // cJSON would read "silu"                     // 2d (eh_proj input) >= 2^31
    expect_bad(V3 "\"moe_intermediate_size\": 1073741824}", "'moe_intermediate_size'"); // fused gate_up rows 2Im >= 2^31
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 0, \"original_max_position_embeddings\": 4096}}", "factor");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": -4, \"original_max_position_embeddings\": 4096}}", "factor");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"original_max_position_embeddings\": -1}}",
               "original_max_position_embeddings");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4, \"beta_fast\": 1, \"beta_slow\": 32}}", "beta_fast");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": \"forty\"}}", "factor");
    expect_bad(V3 "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}", "rope_type");
    expect_bad(V3 "\"rope_scaling\": \"yarn\"}", "rope_scaling");
    expect_bad(V3 "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4, \"mscale\": -1}}", "mscale");
    expect_bad(V3 "\"quantization_config\": {\"quant_method\": \"gptq\"}}", "quant_method");
    expect_bad(V3 "\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128]}}", "weight_block_size");
    expect_bad(V3 "\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [0, 128]}}", "weight_block_size");
    expect_bad(V3 "\"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e5m2\"}}", "fmt");
    expect_bad(V3 "\"quantization_config\": {\"quant_method\": \"fp8\", \"scale_fmt\": \"e8\"}}", "scale_fmt");
    expect_bad(V3 "\"intermediate_size\": 0}", "intermediate_size"); // 3 dense layers need it
    expect_bad(V3 "\"moe_intermediate_size\": 0}", "moe_intermediate_size");
    expect_bad("{\"model_type\": \"deepseek_v2\"}", "num_experts_per_tok"); // v2 MoE without a top-k
#undef V3
}

// Random corruptions of the real config: each must parse to a valid config or fail with a message
// naming the file; never crash (run under ASan/UBSan by `make sanitize`).
static void test_mutations(void) {
    char *orig = dsv3_read_file("configs/deepseek-v3.json", NULL);
    CHECK(orig != NULL, "read v3 config");
    if (!orig) return;
    const size_t n = strlen(orig);
    const char subst[] = "{}[],:\"0123456789-e.E nulltrfalse";
    uint64_t rng = 99;
    int ok = 0, refused = 0, silent = 0, invalid = 0;
    char *buf = malloc(n + 1);
    for (int it = 0; it < 4000; it++) {
        memcpy(buf, orig, n + 1);
        for (int j = 0; j < 2; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            buf[(rng >> 33) % n] = subst[(rng >> 8) % (sizeof subst - 1)];
        }
        dsv3_config c;
        dsv3_error_clear();
        if (parse(&c, buf) == 0) {
            ok++;
            if (dsv3_config_validate(&c, "test.json") != 0) invalid++;
            dsv3_counts k;
            dsv3_config_counts(&c, &k);
            if (k.total_params == 0) invalid++;
        } else {
            refused++;
            if (!strstr(dsv3_error(), "test.json")) silent++;
        }
    }
    free(buf);
    free(orig);
    CHECK(silent == 0 && invalid == 0, "mutations: %d silent failures, %d invalid accepted (%d ok, %d refused)", silent, invalid, ok, refused);
}

// A hostile config with 10^5 distinct keys (4 MB) must be handled in well under a second: the duplicate
// key check used to compare every pair (about 25 s here). The 5 s bound leaves room for sanitizers.
// Also a duplicate hidden among them, and one inside a nested object, are still found.
#include <time.h>
static void test_many_keys(void) {
    enum { N = 100000 };
    const size_t cap = (size_t)N * 32 + 256;
    char *buf = malloc(cap);
    for (int dup = 0; dup < 3; dup++) {
        size_t k = (size_t)snprintf(buf, cap, "{\"model_type\": \"deepseek_v3\"");
        for (int i = 0; i < N; i++) k += (size_t)snprintf(buf + k, cap - k, ", \"k%07d\": %d", i, i);
        if (dup == 1) k += (size_t)snprintf(buf + k, cap - k, ", \"k%07d\": 1", N / 2);
        if (dup == 2) k += (size_t)snprintf(buf + k, cap - k, ", \"rope_scaling\": {\"factor\": 1, \"factor\": 2}");
        snprintf(buf + k, cap - k, "}");
        dsv3_config c;
        dsv3_error_clear();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = parse(&c, buf);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        CHECK(s < 5.0, "%d keys parsed in %.2f s (expected well under 1 s)", N, s);
        if (dup == 0) CHECK(rc == 0, "many unknown keys are ignored: %s", dsv3_error());
        if (dup == 1) CHECK(rc == -1 && strstr(dsv3_error(), "'k0050000' appears more than once"), "duplicate among many: %s", dsv3_error());
        if (dup == 2) CHECK(rc == -1 && strstr(dsv3_error(), "'factor' appears more than once"), "nested duplicate: %s", dsv3_error());
    }
    free(buf);
}

// tie_word_embeddings: the head is the embedding, so it is counted once in total, active and MTP-active
// params, while the head matmul still costs FLOPs (exact arithmetic on the shapes).
static void test_tied_counts(void) {
    dsv3_config u, t;
    CHECK(dsv3_config_load(&u, "configs/deepseek-v3.json") == 0, "load v3: %s", dsv3_error());
    t = u;
    t.tie_word_embeddings = 1;
    dsv3_counts ku, kt;
    dsv3_config_counts(&u, &ku);
    dsv3_config_counts(&t, &kt);
    const dsv3_count Vd = (dsv3_count)u.vocab_size * u.hidden_size;
    CHECK(kt.total_params == ku.total_params - Vd && kt.active_params == ku.active_params - Vd, "tied: head not counted twice");
    CHECK(kt.mtp_active_params == ku.mtp_active_params - Vd * u.num_nextn_predict_layers,
          "tied: MTP active counts the shared embedding/head once (%.0f vs untied %.0f)", D(kt.mtp_active_params), D(ku.mtp_active_params));
    CHECK(kt.flops_per_token == ku.flops_per_token && kt.mtp_params == ku.mtp_params, "tied: same FLOPs and MTP params");
}

// YaRN keys HF reads besides factor/beta/mscale: "truncate" (false: no floor/ceil of the correction
// range) and "attention_factor" (cos/sin multiplier used as given). Expected inv_freq values come from
// transformers 5.24 ROPE_INIT_FUNCTIONS["yarn"] on DeepseekV3Config(qk_rope_head_dim=16,
// max_position_embeddings=163840, factor 40, orig 4096, beta 32/1); fp32 results, so 1e-6 relative.
static void test_yarn_keys(void) {
    static const double want_notrunc[8] = {1.000000000e+00, 3.162277639e-01, 1.000000015e-01, 2.771085873e-02,
                                           5.524062552e-03, 7.226381567e-04, 2.499999937e-05, 7.905694474e-06};
    static const double want_trunc[8] = {1.000000000e+00, 3.162277639e-01, 1.000000015e-01, 2.391472459e-02,
                                         5.124999676e-03, 8.498621755e-04, 2.499999937e-05, 7.905694474e-06};
#define YARN_CFG(extra) "{\"model_type\": \"deepseek_v3\", \"qk_rope_head_dim\": 16, \"max_position_embeddings\": 163840, " \
    "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 40.0, " \
    "\"original_max_position_embeddings\": 4096, \"beta_fast\": 32.0, \"beta_slow\": 1.0" extra "}}"
    const char *cfgs[3] = {YARN_CFG(", \"mscale\": 1.0, \"mscale_all_dim\": 1.0, \"truncate\": false"),
                           YARN_CFG(", \"attention_factor\": 0.75"), YARN_CFG("")};
    const double *want[3] = {want_notrunc, want_trunc, want_trunc};
    const double want_af[3] = {1.0, 0.75, 1.0 + 0.1 * log(40.0)}; // absent: HF get_mscale(factor) = 0.1 ln f + 1
    for (int k = 0; k < 3; k++) {
        dsv3_config c;
        int rc = parse(&c, cfgs[k]);
        CHECK(rc == 0, "yarn case %d: %s", k, dsv3_error());
        if (rc) continue;
        float inv[8];
        dsv3_rope_inv_freq(&c, inv);
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= t_close(inv[i], want[k][i], 0, 1e-6);
        CHECK(ok, "yarn case %d: inv_freq[3] %.9e (HF %.9e)", k, inv[3], want[k][3]);
        CHECK(t_close(dsv3_rope_attention_factor(&c), want_af[k], 0, 1e-12), "yarn case %d: attention factor %.9f (HF %.9f)", k,
              dsv3_rope_attention_factor(&c), want_af[k]);
    }
    {   // transformers 5 spells the MTP depth num_mtp_layers in code (attribute_map alias); both are read
        dsv3_config c;
        CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"num_mtp_layers\": 2}") == 0 && c.num_nextn_predict_layers == 2,
              "num_mtp_layers alias: %s", dsv3_error());
        CHECK(parse(&c, "{\"model_type\": \"deepseek_v3\", \"num_mtp_layers\": 2, \"num_nextn_predict_layers\": 1}") == 0 &&
                  c.num_nextn_predict_layers == 1, "num_nextn_predict_layers wins over the alias");
        expect_bad("{\"model_type\": \"deepseek_v3\", \"num_mtp_layers\": -1}", "num_nextn_predict_layers");
    }
    expect_bad("{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"mlp_bias\": true}", "mlp_bias"); // HF V2 MLP biases
    {
        dsv3_config c;
        CHECK(parse(&c, "{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"mlp_bias\": false}") == 0, "mlp_bias false: %s",
              dsv3_error());
    }
    // noaux_tc's correction bias is defined for sigmoid scores only (V2 defaults to softmax)
    expect_bad("{\"model_type\": \"deepseek_v2\", \"num_experts_per_tok\": 6, \"topk_method\": \"noaux_tc\"}", "topk_method");
    expect_bad("{\"model_type\": \"deepseek_v3\", \"scoring_func\": \"softmax\"}", "noaux_tc");
    expect_bad(YARN_CFG(", \"attention_factor\": 0"), "attention_factor");
    expect_bad(YARN_CFG(", \"attention_factor\": -1.5"), "attention_factor");
    expect_bad(YARN_CFG(", \"truncate\": \"no\""), "truncate");
#undef YARN_CFG
}

int main(void) {
    test_many_keys();
    test_yarn_keys();
    test_tied_counts();
    test_v3_real();
    test_huge_counts_exact();
    test_v2_lite();
    test_small_configs();
    test_forms_and_defaults();
    test_bad();
    test_mutations();
    return test_report("test_config");
}
