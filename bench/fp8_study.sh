#!/usr/bin/env bash
# FP8 accumulation-precision study (docs/FP8.md): runs `dsv3 fp8 study` for U(0,1) and N(0,1) inputs,
# writes the tables into docs/FP8.md (between the study markers) and plots docs/fp8_study.png.
# Usage: bash bench/fp8_study.sh [path/to/dsv3]      (about a minute on 2 cores; needs gnuplot)
set -euo pipefail
D=${1:-./dsv3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"$D" fp8 study --dist uniform >"$tmp/uniform.txt"
"$D" fp8 study --dist normal >"$tmp/normal.txt"
# variants at K = 4096 for the discussion: alignment per 4 products, amax/448 scales, 13 and 16 bits
"$D" fp8 study --dist uniform --k 4096 --group 4 >"$tmp/g4.txt"
"$D" fp8 study --dist uniform --k 4096 --scale amax >"$tmp/amax.txt"
"$D" fp8 study --dist uniform --k 4096 --bits 13 >"$tmp/b13.txt"
"$D" fp8 study --dist uniform --k 4096 --bits 16 >"$tmp/b16.txt"
"$D" fp8 study --dist normal --k 4096 --scale amax >"$tmp/namax.txt"
"$D" fp8 study --dist normal --k 4096 --round zero >"$tmp/nzero.txt"

# one data file per N_C: K value (column 1) and the metric (column 2)
for nc in fp32 32 64 128 256 none; do
  awk -v nc=$nc '$2 == nc { print $1, $3 }' "$tmp/uniform.txt" >"$tmp/u_$nc.dat"
  awk -v nc=$nc '$2 == nc { print $1, $4 }' "$tmp/normal.txt" >"$tmp/n_$nc.dat"
done
gnuplot <<GP
set terminal pngcairo size 1200,520 font "sans,10"
set output "docs/fp8_study.png"
set multiplot layout 1,2 title "FP8 GEMM (E4M3, 1x128 / 128x128 power-of-two scales), emulated 14-bit tensor-core accumulator (aligned per 32 products, dropped bits toward -inf), M = N = 64"
set logscale xy
set xtics (512, 1024, 2048, 4096, 8192, 16384)
set format y "10^{%L}"
set xlabel "K (inner dimension)"
set grid
set key top left font ",9"
set title "U(0,1) inputs: max relative error vs fp64"
set ylabel "max_{ij} |C - C_{64}| / |C_{64}|"
plot for [nc in "none 256 128 64 32 fp32"] "$tmp/u_".nc.".dat" using 1:2 with linespoints lw 2 title (nc eq "fp32" ? "fp32 (exact products)" : (nc eq "none" ? "no promotion" : "N_C = ".nc))
set title "N(0,1) inputs: mean relative error vs fp64"
set ylabel "mean_{ij} |C - C_{64}| / |C_{64}|"
plot for [nc in "none 256 128 64 32 fp32"] "$tmp/n_".nc.".dat" using 1:2 with linespoints lw 2 title (nc eq "fp32" ? "fp32 (exact products)" : (nc eq "none" ? "no promotion" : "N_C = ".nc))
unset multiplot
GP

# tables into docs/FP8.md between the markers
{
  echo '<!-- study: begin (bench/fp8_study.sh writes this block) -->'
  echo "Measured $(date -u +%Y-%m-%d) with \`bash bench/fp8_study.sh\`."
  for f in uniform normal g4 amax b13 b16 namax nzero; do
    echo; echo '```'; cat "$tmp/$f.txt"; echo '```'
  done
  echo '<!-- study: end -->'
} >"$tmp/block.md"
if grep -q '<!-- study: begin' docs/FP8.md 2>/dev/null; then
  awk -v blk="$tmp/block.md" '
    /<!-- study: begin/ { while ((getline l < blk) > 0) print l; skip = 1; next }
    /<!-- study: end -->/ { skip = 0; next }
    !skip { print }' docs/FP8.md >"$tmp/FP8.md" && cat "$tmp/FP8.md" >docs/FP8.md
else
  cat "$tmp/block.md"
fi
echo "wrote docs/fp8_study.png and the study tables in docs/FP8.md"
