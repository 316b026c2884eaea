#!/usr/bin/env bash
# dsv3 bench gemm / gemv: the pinned JSON keys, every weight storage and form, bad usage exits 2.
source tests/cli/lib.bash
D=${DSV3:-./dsv3}
expect_exit 0 "--help" "$D" bench --help
expect_exit 2 "no benchmark" "$D" bench
expect_exit 2 "unknown benchmark" "$D" bench fly --n 8 --k 8 --weights f32
expect_exit 2 "missing --m" "$D" bench gemm --n 64 --k 64 --weights f32
expect_exit 2 "missing --weights" "$D" bench gemv --n 64 --k 64
expect_exit 2 "bad weights" "$D" bench gemv --n 64 --k 64 --weights int4
expect_exit 2 "bad form" "$D" bench gemm --m 4 --n 64 --k 64 --weights f32 --form xgrad
expect_exit 2 "training form with fp8 weights" "$D" bench gemm --m 4 --n 64 --k 64 --weights fp8 --form dgrad
expect_exit 2 "zero size" "$D" bench gemm --m 0 --n 64 --k 64 --weights f32
expect_exit 2 "not a number" "$D" bench gemv --n 6x4 --k 64 --weights f32
for w in f32 bf16 fp8; do
  j=$("$D" bench gemm --m 32 --n 256 --k 384 --weights $w --threads 2 --json)
  check "gemm $w json ($j)" grep -q '^{"gflops":[0-9.]*,"seconds":[0-9.e-]*,"path":"[a-z0-9-]*"' <<<"$j"
  j=$("$D" bench gemv --n 256 --k 384 --weights $w --json)
  check "gemv $w json ($j)" grep -q '^{"gbps":[0-9.]*,"weights_per_s":[0-9.e+]*,.*"path":"\(gemv-avx2\|gemv-avx512\|scalar\)"' <<<"$j"
done
for f in dgrad wgrad; do
  j=$("$D" bench gemm --m 32 --n 256 --k 384 --weights f32 --form $f --json)
  check "gemm $f json ($j)" grep -q "\"path\":\"backend-cpu-sgemm-[a-z0-9]*\".*\"form\":\"$f\"" <<<"$j"
done
for f in dgrad wgrad; do # the bf16-input GEMM of bf16 training
  j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights bf16 --form $f --json)
  check "gemm bf16 $f json ($j)" grep -q "\"path\":\"bgemm-\(amx\|avx512bf16\|scalar-ref\)\".*\"form\":\"$f\",\"act\":\"bf16\"" <<<"$j"
done
for w in bf16 fp8; do
  j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights $w --act bf16 --json)
  check "gemm $w --act bf16 ($j)" grep -q '"path":"\(bgemm-amx\|bgemm-avx512bf16\|gemm-avx2\|scalar\)"' <<<"$j"
  j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights $w --json)
  check "gemm $w default act is f32 ($j)" grep -q '"path":"\(gemm-avx2\|sgemm-avx512\|scalar\)".*"act":"f32"' <<<"$j"
done
# --pack cached: the BF16 GEMM reads W's pack from the packed-weight cache (levels with that GEMM);
# per-call (the default) packs it every call; the SGEMM levels always pack per call.
for f in fwd dgrad; do
  j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights bf16 --act bf16 --form $f --pack cached --json)
  if grep -q '"path":"bgemm-\(amx\|avx512bf16\)"' <<<"$j"; then
    check "gemm bf16 $f --pack cached reads the cached pack ($j)" grep -q '"pack":"cached"' <<<"$j"
  else
    check "gemm bf16 $f --pack cached without the BF16 GEMM: per call ($j)" grep -q '"pack":"per-call"' <<<"$j"
  fi
  j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights bf16 --act bf16 --form $f --json)
  check "gemm bf16 $f default: per call ($j)" grep -q '"pack":"per-call"' <<<"$j"
done
j=$("$D" bench gemm --m 64 --n 256 --k 384 --weights f32 --pack cached --json)
check "gemm f32 (SGEMM) --pack cached: per call ($j)" grep -q '"pack":"per-call"' <<<"$j"
expect_exit 2 "bad --pack" "$D" bench gemm --m 4 --n 64 --k 64 --weights bf16 --pack sometimes

# The kernel each level runs (the levels this CPU has; the others are reported as skipped).
top=$("$D" bench gemv --n 64 --k 64 --weights f32 --json | sed 's/.*"isa":"\([a-z0-9]*\)".*/\1/')
rank() { case $1 in scalar) echo 0;; avx2) echo 1;; avx512) echo 2;; amx) echo 3;; *) echo -1;; esac; }
check "the JSON names the level ($top)" test "$(rank "$top")" -ge 0
for lv in scalar avx2 avx512 amx; do
  if [ "$(rank $lv)" -gt "$(rank "$top")" ]; then echo "SKIP bench.sh: level $lv (this CPU tops out at $top)"; continue; fi
  case $lv in scalar) gv=scalar; gm=scalar;; avx2) gv=gemv-avx2; gm=gemm-avx2;; *) gv=gemv-avx512; gm=sgemm-avx512;; esac
  for w in f32 fp8; do
    j=$(DSV3_ISA=$lv "$D" bench gemm --m 4 --n 64 --k 200 --weights $w --json)
    check "$lv $w M=4 path $gv ($j)" grep -q "\"path\":\"$gv\".*\"isa\":\"$lv\"" <<<"$j"
    j=$(DSV3_ISA=$lv "$D" bench gemm --m 40 --n 64 --k 200 --weights $w --json)
    check "$lv $w M=40 path $gm ($j)" grep -q "\"path\":\"$gm\"" <<<"$j"
  done
done
j=$("$D" bench peak --threads 1 --json)
check "peak json ($j)" grep -q '^{"fp32_fma_ymm":-\?[0-9.]*,"fp32_fma_zmm":-\?[0-9.]*,"bf16_vdpbf16ps_zmm":-\?[0-9.]*,"bf16_amx_tdpbf16ps":-\?[0-9.]*,"isa":"[a-z0-9]*","threads":1}' <<<"$j"
j=$(DSV3_ISA=avx2 "$D" bench peak --threads 1 --json)
check "peak below avx512: zmm kernels not available ($j)" grep -q '"fp32_fma_zmm":-1.0,.*"bf16_amx_tdpbf16ps":-1.0' <<<"$j"
expect_exit 2 "peak: bad option" "$D" bench peak --fast
expect_exit 2 "bad --act" "$D" bench gemm --m 4 --n 64 --k 64 --weights bf16 --act fp4
j=$("$D" bench gemm --m 1 --n 256 --k 384 --weights f32 --json)
check "M = 1 takes the GEMV path" grep -q '"path":"\(gemv-avx2\|gemv-avx512\|scalar\)"' <<<"$j"
finish
