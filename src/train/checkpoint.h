// Training checkpoints (docs/TRAINING.md): a folder that is a Hugging Face checkpoint
// (config.json, generation_config.json, model.safetensors or shards + model.safetensors.index.json,
// the tokenizer files when known) plus trainer_state.bin, which holds everything an exact resume
// needs: the fp32 masters, the AdamW moments, and a JSON header (step, tokens, data cursor, seed,
// schedule, run identity). Every file is written durably (core/durable.h); trainer_state.bin is
// written last and records the size of the weights it belongs to.
#pragma once
#include "model/tmodel.h"
#include "train/optim.h"

typedef enum { DSV3_SAVE_F32 = 0, DSV3_SAVE_BF16 = 1, DSV3_SAVE_FP8 = 2 } dsv3_save_dtype;
const char *dsv3_save_dtype_name(dsv3_save_dtype d);

// Writes the HF part into `dir` (created if missing). config_json: the source config.json text; its
// dtype / quantization_config are rewritten for `dt`. tokenizer_dir (or NULL): its tokenizer.json and
// tokenizer_config.json are copied. Shards above max_shard_bytes (0: 4 GiB). FP8: every Linear weight
// of the decoder layers as F8_E4M3 + 128x128 weight_scale_inv (the released layout); embedding, head,
// router, eh_proj and vectors stay BF16, e_score_correction_bias F32. Returns 0 or -1.
int dsv3_ckpt_write_model(const char *dir, const dsv3_tmodel *tm, const char *config_json, dsv3_save_dtype dt,
                          const char *tokenizer_dir, size_t max_shard_bytes);

// trainer_state.bin: magic "DSV3TRST", version, JSON header length, JSON, then the arenas (params,
// m, v) with an FNV-1a 64 of them in the JSON. Returns 0 or -1.
int dsv3_ckpt_write_state(const char *dir, const char *json, const dsv3_tmodel *tm, const dsv3_adamw *o);
// Reads DIR/trainer_state.bin into an allocated tm (its table must match: checked by size) and o.
// *json is malloc'd. Returns 0 or -1 with a message naming the file and the mismatch.
int dsv3_ckpt_read_state(const char *dir, char **json, dsv3_tmodel *tm, dsv3_adamw *o);
