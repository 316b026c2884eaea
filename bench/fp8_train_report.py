#!/usr/bin/env python3
"""Tables and plots of the FP8-vs-BF16 twin runs of bench/fp8_train_bench.sh, written into
docs/FP8_TRAINING.md between the fp8-train-bench markers, and docs/fp8_train_{loss,gap}.png.

    python3 bench/fp8_train_report.py [RUNS_DIR]      (default data/runs/fp8; stdlib + gnuplot)

Loss = the main next-token cross-entropy ("main" in metrics.jsonl: the MTP and balance terms excluded).
Train loss at step s = mean of steps s-W+1..s (W = 20, the runs see different batches each step, so
single steps are noisy); validation loss = the trainer's evaluation on 64 held-out rows, in the run's own
precision. Relative gap of X vs bf16 = (L_X - L_bf16) / L_bf16.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

W = 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "FP8_TRAINING.md")
BEGIN, END = "<!-- fp8-train-bench:begin -->", "<!-- fp8-train-bench:end -->"
ORDER = ["fp32", "bf16", "bf16-seed2", "fp8", "fp8-dgrad-block", "fp8-hopper14"]
WHAT = {
    "fp32": "fp32 GEMMs",
    "bf16": "bf16 GEMM inputs, fp32 accumulation (the baseline)",
    "bf16-seed2": "the baseline with another seed (init and data order): the noise floor",
    "fp8": "DeepSeek-V3's FP8 recipe (bf16 moments)",
    "fp8-dgrad-block": "fp8 with 128x128 blocks for the activation gradients",
    "fp8-hopper14": "fp8 with a 14-bit accumulator, never promoted",
}


def load(d):
    steps, evals, log = {}, {}, ""
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "step" in r and isinstance(r.get("main"), (int, float)):
                steps[r["step"]] = r
            elif "eval" in r:
                evals[r["eval"]] = r
    lp = d + ".log"
    if os.path.exists(lp):
        log = open(lp).read()
    cmd = open(d + ".cmd").read().strip() if os.path.exists(d + ".cmd") else ""
    return {"steps": steps, "evals": evals, "log": log, "cmd": cmd}


def train_at(run, s):
    xs = [run["steps"][k]["main"] for k in range(s - W + 1, s + 1) if k in run["steps"]]
    return sum(xs) / len(xs) if len(xs) == W else None


def gap(a, b):
    return None if a is None or b is None else (a - b) / b


def pct(x, digits=2):
    return "–" if x is None else f"{100 * x:+.{digits}f} %"


def main():
    runs_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "runs", "fp8")
    runs = {n: load(os.path.join(runs_dir, n)) for n in ORDER if os.path.exists(os.path.join(runs_dir, n, "metrics.jsonl"))}
    if "bf16" not in runs:
        sys.exit("fp8_train_report: no bf16 baseline run in " + runs_dir)
    base = runs["bf16"]
    last = max(base["steps"])
    checkpoints = [s for s in (25, 50, 100, 150, last) if s <= last and s >= W]
    out = []
    out.append(f"Measured by `bash bench/fp8_train_bench.sh` (runs in `{os.path.relpath(runs_dir, ROOT)}`; this section and the plots "
               f"are written by `bench/fp8_train_report.py`). Every run: configs/tiny.json from the same random init "
               f"(seed 0 unless noted) on the same batches of data/shards-tiny (the main job's corpus, 256-token rows), "
               f"{last} steps of 8 rows = {last * 2048:,} tokens, lr 2e-3 with 20 warmup steps and the V3 schedules, "
               f"2 threads. Loss = the main next-token cross-entropy; train loss at a step = mean of the last {W} steps.\n")
    out.append("| run | what | steps | train loss | val loss | train gap vs bf16 | val gap vs bf16 | step time | vs bf16 |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    bstep = statistics.median(r["tok_s"] for r in base["steps"].values() if r["step"] > 2)
    for n, r in runs.items():
        s = max(r["steps"])
        tl, bl = train_at(r, s), train_at(base, s)
        ev = max(r["evals"]) if r["evals"] else None
        vl = r["evals"][ev]["val_main"] if ev is not None else None
        bv = base["evals"].get(ev, {}).get("val_main") if ev is not None else None
        tok = statistics.median(x["tok_s"] for x in r["steps"].values() if x["step"] > 2) if len(r["steps"]) > 2 else None
        st = 2048 / tok if tok else None
        out.append(f"| {n} | {WHAT[n]} | {s} | {tl:.4f} | {'–' if vl is None else f'{vl:.4f}'} (step {ev}) | "
                   f"{'–' if n == 'bf16' else pct(gap(tl, bl))} | {'–' if n == 'bf16' else pct(gap(vl, bv))} | "
                   f"{'–' if st is None else f'{st:.2f} s'} | {'–' if st is None else f'{bstep / tok:.2f}x'} |")
    out.append("")
    out.append("Relative train-loss gap vs bf16 over the run (mean of the last 20 steps at each point):\n")
    out.append("| run | " + " | ".join(f"step {s}" for s in checkpoints) + " |")
    out.append("|---|" + "---|" * len(checkpoints))
    for n, r in runs.items():
        if n == "bf16":
            continue
        out.append(f"| {n} | " + " | ".join(pct(gap(train_at(r, s), train_at(base, s))) if s <= max(r["steps"]) else "–"
                                             for s in checkpoints) + " |")
    out.append("")
    evs = sorted(base["evals"])
    out.append("Relative validation-loss gap vs bf16 at each evaluation:\n")
    out.append("| run | " + " | ".join(f"step {e}" for e in evs) + " |")
    out.append("|---|" + "---|" * len(evs))
    for n, r in runs.items():
        if n == "bf16":
            continue
        out.append(f"| {n} | " + " | ".join(pct(gap(r["evals"][e]["val_main"], base["evals"][e]["val_main"]))
                                             if e in r["evals"] else "–" for e in evs) + " |")
    out.append("")
    out.append("Activation memory, from each run's log (the trainer's planned arenas):\n")
    for n, r in runs.items():
        line = next((l for l in r["log"].splitlines() if "activations" in l and "MiB" in l), "")
        if line:
            out.append(f"- {n}: {line[line.index('activations'):]}")
    out.append("")
    out.append("Commands:\n")
    out.append("```sh")
    for n, r in runs.items():
        if r["cmd"]:
            out.append(r["cmd"])
    out.append("```")
    out.append("")
    out.append("![loss curves](fp8_train_loss.png)\n")
    out.append("![relative gap](fp8_train_gap.png)")

    # plots
    with tempfile.TemporaryDirectory() as tmp:
        for n, r in runs.items():
            with open(os.path.join(tmp, f"{n}.loss"), "w") as f:
                for s in sorted(r["steps"]):
                    v = train_at(r, s)
                    if v is not None:
                        f.write(f"{s} {v}\n")
            with open(os.path.join(tmp, f"{n}.gap"), "w") as f:
                for s in sorted(r["steps"]):
                    g = gap(train_at(r, s), train_at(base, s))
                    if g is not None:
                        f.write(f"{s} {100 * g}\n")
        names = list(runs)
        lplot = ", ".join(f"'{tmp}/{n}.loss' with lines lw 2 title '{n}'" for n in names)
        gplot = ", ".join(f"'{tmp}/{n}.gap' with lines lw 2 title '{n} vs bf16'" for n in names if n != "bf16")
        gp = f"""
set terminal pngcairo size 900,520 font "sans,10"
set output "{ROOT}/docs/fp8_train_loss.png"
set title "configs/tiny.json on data/shards-tiny: main next-token loss (mean of the last {W} steps)"
set xlabel "step (2048 tokens each)"; set ylabel "loss (nats)"; set grid; set key top right
plot {lplot}
set output "{ROOT}/docs/fp8_train_gap.png"
set title "relative train-loss gap vs the bf16 baseline, (L - L_bf16) / L_bf16"
set ylabel "gap (%)"; set yrange [-3:3]
plot 0 with lines lc rgb "black" notitle, 0.25 with lines dt 2 lc rgb "gray" title "+0.25 %", -0.25 with lines dt 2 lc rgb "gray" title "-0.25 %", {gplot}
"""
        subprocess.run(["gnuplot"], input=gp, text=True, check=True)

    doc = open(DOC).read()
    if BEGIN in doc:
        a, b = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:a] + BEGIN + "\n" + "\n".join(out) + "\n" + END + doc[b:]
    else:
        doc = doc.rstrip("\n") + "\n\n## The experiment: FP8 vs BF16 twin runs\n\n" + BEGIN + "\n" + "\n".join(out) + "\n" + END + "\n"
    with open(DOC, "w") as f:
        f.write(doc)
    print("\n".join(out))


if __name__ == "__main__":
    main()
