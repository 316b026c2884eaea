// --precision and the FP8 recipe options of train, grad and logits (commands.h).
#include "commands.h"
#include "core/error.h"
#include <string.h>

const char *const cli_precision_help =
    "  --precision P     fp32 (default); bf16: GEMM inputs rounded to bf16, fp32 accumulation; fp8:\n"
    "                    DeepSeek-V3's FP8 recipe (docs/FP8_TRAINING.md): every Linear of attention, MLP,\n"
    "                    experts and MTP eh_proj in E4M3 (activations 1x128 tiles, weights 128x128 blocks,\n"
    "                    fp32 accumulation promoted per 128), bf16 outputs; head and router bf16; attention\n"
    "                    core, norms, masters and gradients fp32\n"
    "  --fp8-accum A     fp8 accumulator: exact (promoted fp32, default), hopper14 (14-bit, never promoted)\n"
    "                    or promote:N (14-bit, promoted to fp32 every N elements)\n"
    "  --scale-format F  fp8 scales: amax (max|x|/448, default) or ue8m0 (powers of two everywhere)\n"
    "  --fp8-dgrad G     activation gradients in 1x128 tiles (tile, default) or 128x128 blocks (block)\n"
    "  --fp8-wgrad-x X   Wgrad input re-tiled from the cached 1x128 codes (retile, default) or quantized\n"
    "                    from the high-precision activations (high; keeps the fp32 inputs)\n"
    "  --fp8-blocks B    the blocks whose Linears are FP8: all (default) or a comma list of attn, mlp\n"
    "                    (dense), experts (routed + shared), mtp (eh_proj); the others run in bf16\n"
    "  --fp8-act-cache C the FP8 Linears' inputs kept for the backward as their E4M3 codes only (fp8,\n"
    "                    default: DeepSeek-V3's activation caching) or also in fp32 (fp32: more memory,\n"
    "                    the same gradients)\n";

void cli_precision_default(cli_precision *p) {
    memset(p, 0, sizeof *p);
    dsv3_fp8_recipe_default(&p->fp8);
}

int cli_precision_opt(const char *cmd, const char *opt, const char *v, cli_precision *p, int *bad) {
    if (!strcmp(opt, "--precision")) {
        if (!strcmp(v, "fp32")) p->precision = 0;
        else if (!strcmp(v, "bf16")) p->precision = 1;
        else if (!strcmp(v, "fp8")) p->precision = 2;
        else { cli_usage_error(cmd, "--precision: '%s' is not fp32, bf16 or fp8", v); *bad = 1; }
        return 1;
    }
    if (!strcmp(opt, "--fp8-accum")) {
        if (dsv3_fp8_accum_parse(v, &p->fp8.acc) < 0) { cli_usage_error(cmd, "%s", dsv3_error()); *bad = 1; }
    } else if (!strcmp(opt, "--scale-format")) {
        if (!strcmp(v, "amax")) p->fp8.scale_fmt = DSV3_SCALE_AMAX;
        else if (!strcmp(v, "ue8m0")) p->fp8.scale_fmt = DSV3_SCALE_UE8M0;
        else { cli_usage_error(cmd, "--scale-format: '%s' is not amax or ue8m0", v); *bad = 1; }
    } else if (!strcmp(opt, "--fp8-dgrad")) {
        if (!strcmp(v, "tile")) p->fp8.dgrad_block = 0;
        else if (!strcmp(v, "block")) p->fp8.dgrad_block = 1;
        else { cli_usage_error(cmd, "--fp8-dgrad: '%s' is not tile or block", v); *bad = 1; }
    } else if (!strcmp(opt, "--fp8-wgrad-x")) {
        if (!strcmp(v, "retile")) p->fp8.wgrad_x_high = 0;
        else if (!strcmp(v, "high")) p->fp8.wgrad_x_high = 1;
        else { cli_usage_error(cmd, "--fp8-wgrad-x: '%s' is not retile or high", v); *bad = 1; }
    } else if (!strcmp(opt, "--fp8-blocks")) {
        if (dsv3_fp8_blocks_parse(v, &p->fp8.blocks) < 0) { cli_usage_error(cmd, "%s", dsv3_error()); *bad = 1; }
    } else if (!strcmp(opt, "--fp8-act-cache")) {
        if (!strcmp(v, "fp8")) p->fp8.keep_fp32_inputs = 0;
        else if (!strcmp(v, "fp32")) p->fp8.keep_fp32_inputs = 1;
        else { cli_usage_error(cmd, "--fp8-act-cache: '%s' is not fp8 or fp32", v); *bad = 1; }
    } else {
        return 0;
    }
    p->fp8_knob_set = 1;
    return 1;
}

int cli_precision_check(const char *cmd, const cli_precision *p) {
    if (p->fp8_knob_set && p->precision != 2)
        return cli_usage_error(cmd, "--fp8-accum, --scale-format, --fp8-dgrad, --fp8-wgrad-x, --fp8-blocks and --fp8-act-cache need --precision fp8");
    return 0;
}

const dsv3_backend *cli_precision_backend(const cli_precision *p) {
    return p->precision ? dsv3_backend_cpu_bf16() : dsv3_backend_cpu();
}
