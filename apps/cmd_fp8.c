// dsv3 fp8: FP8 numerics from the command line.
//   dsv3 fp8 cast --format e4m3|e5m2|e5m6 [--saturate]   values on stdin -> codes and decoded values
//   dsv3 fp8 study [--k K] [--nc N] [--m M --n N] ...     the accumulation-precision study (docs/FP8.md)
#include "commands.h"
#include "core/error.h"
#include "core/fileio.h"
#include "numerics/fp8.h"
#include "numerics/fp8_gemm.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *k_usage =
    "usage: dsv3 fp8 <cast|study> [options]\n"
    "  cast    encode float32 values (stdin, one per line) to E4M3 / E5M2 / E5M6\n"
    "  study   FP8 GEMM accumulation-precision study (limited tensor-core accumulator vs promotion)\n"
    "run 'dsv3 fp8 cast --help' or 'dsv3 fp8 study --help' for options\n";

static const char *k_cast_usage =
    "usage: dsv3 fp8 cast --format e4m3|e5m2|e5m6 [--saturate] < values.txt\n"
    "Reads float32 values as decimal text, one per line (nan and inf are accepted), and prints for each\n"
    "line the encoded bits in hex and the decoded value (%.9g): e.g. '0x7e 448'.\n"
    "Rounding is to nearest, ties to even. Overflow: by default values past the largest finite value\n"
    "become inf (e5m2, e5m6) or NaN (e4m3, which has no inf), like torch/ml_dtypes casts; --saturate\n"
    "clamps them to the largest finite value (448, 57344, 65024), as quantizers do.\n"
    "E5M6 codes are 12 bits (sign, 5 exponent bits with bias 15, 6 mantissa bits; see docs/FP8.md).\n"
    "Lines are at most 4096 bytes, at most 2^28 values per run.\n"
    "Exit status: 0 ok, 1 stdout could not be written, 2 bad usage or a line that is not a number (the\n"
    "message names the line; nothing is printed).\n";

static const char *k_study_usage =
    "usage: dsv3 fp8 study [--k K] [--nc N] [--m M] [--n N] [--seed S] [--dist normal|uniform]\n"
    "                      [--scale ue8m0|amax] [--bits B] [--group G] [--round floor|zero]\n"
    "C = A·Bᵀ with random A (M×K) and B (N×K) quantized to E4M3 (1×128 and 128×128 tiles), accumulated\n"
    "(a) in fp32 with exact products (DeepSeek's promoted kernel: row 'fp32') and (b) in an emulated\n"
    "Hopper tensor-core accumulator that keeps B bits after aligning each group of G products to the\n"
    "largest exponent, promoted to fp32 every N_C elements (rows 32..256) or never (row 'none').\n"
    "Errors are against an fp64 GEMM of the dequantized inputs: max/mean of |C-C64|/|C64| over the\n"
    "outputs, and max/mean of |C-C64|/sum|a·b|.\n"
    "  --k K          one K instead of 512 1024 2048 4096 8192 16384\n"
    "  --nc N         one promotion interval: a multiple of G, 'none' (or 0), or 'fp32'\n"
    "                 (default: fp32 32 64 128 256 none)\n"
    "  --m M --n N    output size (default 64 x 64)\n"
    "  --seed S       random seed (default 1)\n"
    "  --dist D       normal: N(0,1) entries (default); uniform: U(0,1) entries (no cancellation)\n"
    "  --scale F      ue8m0: power-of-two scales (default); amax: amax/448 scales\n"
    "  --bits B       accumulator bits (default 14); --group G products per alignment (default 32)\n"
    "  --round R      dropped bits: floor (two's complement sign-fill shift, default) or zero\n"
    "One (M, N, K) cell may use at most 2 GiB of working memory ((M+N)·K·5 + M·N·20 bytes): larger\n"
    "sizes are refused up front (exit 2). Exit status: 1 when stdout cannot be written.\n";

#define CAST_MAX_LINE 4096          // bytes per input line
#define CAST_MAX_VALUES (1 << 28)   // values per run (1 GiB of floats held before printing)

static int parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || end == v || x < lo || x > hi)
        return cli_usage_error(cmd, "%s needs an integer in [%ld, %ld], found '%s'", opt, lo, hi, v ? v : "(nothing)");
    *out = x;
    return 0;
}

static int cmd_cast(int argc, char **argv) {
    const char *cmd = "fp8 cast";
    int have_fmt = 0;
    dsv3_fp8_format fmt = DSV3_FMT_E4M3;
    dsv3_fp8_policy pol = DSV3_FP8_NONSAT;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { fputs(k_cast_usage, stdout); return 0; }
        if (strcmp(argv[i], "--saturate") == 0) pol = DSV3_FP8_SATURATE;
        else if (strcmp(argv[i], "--format") == 0) {
            if (i + 1 >= argc) return cli_usage_error(cmd, "--format needs a value (e4m3, e5m2 or e5m6)");
            if (dsv3_fp8_format_parse(argv[++i], &fmt) != 0)
                return cli_usage_error(cmd, "--format must be e4m3, e5m2 or e5m6, found '%s'", argv[i]);
            have_fmt = 1;
        } else return cli_usage_error(cmd, "unknown option '%s'", argv[i]);
    }
    if (!have_fmt) return cli_usage_error(cmd, "--format is required (e4m3, e5m2 or e5m6)");
    // Parse everything first: a bad line gives exit 2 and no output at all.
    size_t n = 0, cap = 1024;
    float *vals = dsv3_malloc(cap * sizeof(float));
    char line[CAST_MAX_LINE + 1];
    long lineno = 0;
    int rc = 0;
    for (;;) {
        size_t len = 0;
        int ch = 0, nul = 0, too_long = 0;
        while ((ch = getc_unlocked(stdin)) != EOF && ch != '\n') {
            if (ch == 0) nul = 1;
            if (len < CAST_MAX_LINE) line[len++] = (char)ch;
            else too_long = 1;
        }
        if (ch == EOF && len == 0 && !too_long) break; // no final line
        lineno++;
        line[len] = 0;
        if (too_long) { rc = dsv3_errorf("stdin line %ld: longer than %d bytes (expected one number)", lineno, CAST_MAX_LINE); break; }
        // strtof would stop at a NUL and accept the prefix
        if (nul) { rc = dsv3_errorf("stdin line %ld: expected a decimal number, found a NUL byte", lineno); break; }
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        char *end;
        errno = 0;
        float v = strtof(p, &end);
        // ERANGE only matters for underflow to 0 / overflow to inf, which are the correct float32 roundings.
        // strtof also reads hex floats ("0x1p3", "-0x10"): not decimal, rejected.
        const char *digits = p + (*p == '+' || *p == '-');
        if (*p == 0 || *end != 0 || (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))) {
            char esc[256];
            rc = dsv3_errorf("stdin line %ld: expected a decimal number, found '%s'", lineno,
                             cli_escape(esc, sizeof esc, p, strlen(p), 60));
            break;
        }
        if (n == CAST_MAX_VALUES) { rc = dsv3_errorf("stdin: more than %d values (the limit of one run)", CAST_MAX_VALUES); break; }
        if (n == cap) vals = dsv3_realloc(vals, (cap *= 2) * sizeof(float));
        vals[n++] = v;
        if (ch == EOF) break;
    }
    if (rc == 0 && ferror(stdin)) rc = dsv3_errorf("stdin: read error: %s", strerror(errno));
    if (rc != 0) { free(vals); return cli_bad_input(); }
    for (size_t i = 0; i < n && !ferror(stdout); i++) {
        uint32_t c = dsv3_fp8_encode(fmt, vals[i], pol);
        printf(fmt == DSV3_FMT_E5M6 ? "0x%03x %.9g\n" : "0x%02x %.9g\n", c, (double)dsv3_fp8_decode(fmt, c));
    }
    free(vals);
    return cli_stdout_done(cmd, 0);
}

static int cmd_study(int argc, char **argv) {
    const char *cmd = "fp8 study";
    dsv3_fp8_study_cfg cfg = {.M = 64, .N = 64, .bits = DSV3_FP8_ACC_DEFAULT_BITS, .group = DSV3_FP8_ACC_DEFAULT_GROUP,
                              .seed = 1, .dist = 0, .ue8m0 = 1};
    int ks[6] = {512, 1024, 2048, 4096, 8192, 16384}, nks = 6;
    int ncs[6] = {-1, 32, 64, 128, 256, 0}, nncs = 6;
    long v;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(o)) { fputs(k_study_usage, stdout); return 0; }
        if (strcmp(o, "--k") == 0) { if (parse_int(cmd, o, val, 1, 1 << 20, &v)) return 2; ks[0] = (int)v; nks = 1; i++; }
        else if (strcmp(o, "--m") == 0) { if (parse_int(cmd, o, val, 1, 4096, &v)) return 2; cfg.M = (int)v; i++; }
        else if (strcmp(o, "--n") == 0) { if (parse_int(cmd, o, val, 1, 4096, &v)) return 2; cfg.N = (int)v; i++; }
        else if (strcmp(o, "--seed") == 0) { if (parse_int(cmd, o, val, 0, 0x7fffffffL, &v)) return 2; cfg.seed = (uint64_t)v; i++; }
        else if (strcmp(o, "--bits") == 0) { if (parse_int(cmd, o, val, 2, 40, &v)) return 2; cfg.bits = (int)v; i++; }
        else if (strcmp(o, "--group") == 0) { if (parse_int(cmd, o, val, 1, 4096, &v)) return 2; cfg.group = (int)v; i++; }
        else if (strcmp(o, "--nc") == 0) {
            if (val && (strcmp(val, "none") == 0)) ncs[0] = 0;
            else if (val && strcmp(val, "fp32") == 0) ncs[0] = -1;
            else if (parse_int(cmd, o, val, 0, 1 << 20, &v)) return 2;
            else ncs[0] = (int)v;
            nncs = 1;
            i++;
        } else if (strcmp(o, "--dist") == 0) {
            if (val && strcmp(val, "normal") == 0) cfg.dist = 0;
            else if (val && strcmp(val, "uniform") == 0) cfg.dist = 1;
            else return cli_usage_error(cmd, "--dist must be normal or uniform, found '%s'", val ? val : "(nothing)");
            i++;
        } else if (strcmp(o, "--round") == 0) {
            if (val && strcmp(val, "floor") == 0) cfg.round = DSV3_FP8_ROUND_FLOOR;
            else if (val && strcmp(val, "zero") == 0) cfg.round = DSV3_FP8_ROUND_TRUNC;
            else return cli_usage_error(cmd, "--round must be floor or zero, found '%s'", val ? val : "(nothing)");
            i++;
        } else if (strcmp(o, "--scale") == 0) {
            if (val && strcmp(val, "ue8m0") == 0) cfg.ue8m0 = 1;
            else if (val && strcmp(val, "amax") == 0) cfg.ue8m0 = 0;
            else return cli_usage_error(cmd, "--scale must be ue8m0 or amax, found '%s'", val ? val : "(nothing)");
            i++;
        } else return cli_usage_error(cmd, "unknown option '%s'", o);
    }
    for (int j = 0; j < nncs; j++)
        if (ncs[j] > 0 && ncs[j] % cfg.group)
            return nncs == 1
                ? cli_usage_error(cmd, "--nc %d must be a multiple of the group size %d", ncs[j], cfg.group)
                : cli_usage_error(cmd, "the default promotion intervals 32 64 128 256 need a group size dividing 32 "
                                       "(found --group %d): pass one --nc that is a multiple of it", cfg.group);
    for (int i = 0; i < nks; i++)
        if (dsv3_fp8_study_check(&cfg, ks[i]) != 0) return cli_bad_input();
    printf("# FP8 GEMM accumulation study: M=%d N=%d, E4M3 inputs %s, %s scales (1x128 A, 128x128 B),\n"
           "# accumulator %d bits aligned per %d products, dropped bits rounded %s, seed %llu;\n"
           "# errors vs an fp64 GEMM of the dequantized inputs\n",
           cfg.M, cfg.N, cfg.dist ? "U(0,1)" : "N(0,1)", cfg.ue8m0 ? "ue8m0" : "amax/448", cfg.bits, cfg.group,
           cfg.round == DSV3_FP8_ROUND_FLOOR ? "toward -inf" : "toward zero",
           (unsigned long long)cfg.seed);
    printf("%7s %6s %12s %12s %12s %12s\n", "K", "N_C", "max_rel", "mean_rel", "max_nrm", "mean_nrm");
    for (int i = 0; i < nks; i++) {
        dsv3_fp8_study_row rows[6];
        if (dsv3_fp8_study_run(&cfg, ks[i], ncs, nncs, rows) != 0) return cli_bad_input();
        for (int j = 0; j < nncs; j++) {
            char ncname[16];
            if (rows[j].nc < 0) snprintf(ncname, sizeof ncname, "fp32");
            else if (rows[j].nc == 0) snprintf(ncname, sizeof ncname, "none");
            else snprintf(ncname, sizeof ncname, "%d", rows[j].nc);
            printf("%7d %6s %12.4e %12.4e %12.4e %12.4e\n", rows[j].K, ncname, rows[j].max_rel, rows[j].mean_rel,
                   rows[j].max_nrm, rows[j].mean_nrm);
        }
        if (dsv3_stdout_flush() != 0) { // stop at the first failed write
            fprintf(stderr, "dsv3 %s: %s\n", cmd, dsv3_error());
            return 1;
        }
    }
    return cli_stdout_done(cmd, 0);
}

int cmd_fp8(int argc, char **argv) {
    if (argc < 2) { fputs(k_usage, stderr); return 2; }
    if (cli_is_help(argv[1])) { fputs(k_usage, stdout); return 0; }
    if (strcmp(argv[1], "cast") == 0) return cmd_cast(argc - 1, argv + 1);
    if (strcmp(argv[1], "study") == 0) return cmd_study(argc - 1, argv + 1);
    fprintf(stderr, "dsv3 fp8: unknown subcommand '%s'\n%s", argv[1], k_usage);
    return 2;
}
