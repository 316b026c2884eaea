#!/usr/bin/env python3
"""Tables and plots of the FP8-vs-BF16 twin runs of bench/fp8_train_bench.sh, written into
docs/FP8_TRAINING.md between the fp8-train-bench markers, and docs/fp8_train_{loss,gap}.png.

    python3 bench/fp8_train_report.py [RUNS_DIR]      (default data/runs/fp8; stdlib + gnuplot)

Loss = the main next-token cross-entropy ("main" in metrics.jsonl: the MTP and balance terms excluded).
Train loss at step s = mean of steps s-W+1..s (W = 20; single steps are noisy); validation loss = the
trainer's evaluation on 64 held-out rows, in the run's own precision. Relative gap of X vs Y =
(L_X - L_Y) / L_Y, Y = the bf16 run of the same seed. Step times come from the speed-* runs when present.
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
ORDER = ["fp32", "bf16", "fp8", "fp8-dgrad-block", "fp8-moments-f32", "fp8-only-attn", "fp8-only-experts", "fp8-only-mlp-mtp", "bf16-seed2", "fp8-seed2", "bf16-seed3", "fp8-seed3",
         "bf16-to16", "fp8-to16", "fp8-hopper14"]
WHAT = {
    "fp32": "fp32 GEMMs",
    "bf16": "bf16 GEMM inputs, fp32 accumulation (the baseline)",
    "fp8": "DeepSeek-V3's FP8 recipe (bf16 moments)",
    "fp8-dgrad-block": "fp8 with 128x128 blocks for the activation gradients",
    "fp8-hopper14": "fp8 with a 14-bit accumulator, never promoted (16 steps: it runs on the scalar emulation)",
    "fp8-moments-f32": "fp8 with fp32 AdamW moments (as the bf16 baseline)",
    "fp8-only-attn": "FP8 in the attention Linears only (the rest bf16; bf16 moments as fp8)",
    "fp8-only-experts": "FP8 in the routed + shared experts only (bf16 moments)",
    "fp8-only-mlp-mtp": "FP8 in the dense MLP and MTP eh_proj only (bf16 moments)",
    "bf16-to16": "the baseline, stopped at step 16 (same schedule)",
    "fp8-to16": "fp8, stopped at step 16",
    "bf16-seed2": "the baseline from seed 2 (init and data order)",
    "fp8-seed2": "fp8 from seed 2",
    "bf16-seed3": "the baseline from seed 3",
    "fp8-seed3": "fp8 from seed 3",
}
BASE = {"bf16-seed2": "bf16", "bf16-seed3": "bf16", "fp8-seed2": "bf16-seed2", "fp8-seed3": "bf16-seed3",
        "bf16-to16": "bf16-to16", "fp8-to16": "bf16-to16", "fp8-hopper14": "bf16-to16"}  # default: bf16
PAIRS = [("1", "fp8", "bf16"), ("2", "fp8-seed2", "bf16-seed2"), ("3", "fp8-seed3", "bf16-seed3")]
SPEED = ["fp32", "bf16", "fp8"]
TOKENS_PER_STEP = 8 * 256


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


def train_at(run, s, w=W):
    """Mean main loss of steps s-w+1..s (None unless all are there)."""
    xs = [run["steps"][k]["main"] for k in range(s - w + 1, s + 1) if k in run["steps"]]
    return sum(xs) / len(xs) if xs and len(xs) == w else None


def gap(a, b):
    return None if a is None or b is None else (a - b) / b


def pct(x, digits=2):
    return "–" if x is None else f"{100 * x:+.{digits}f} %"


def step_time(run):
    """Median seconds per step over steps 3.. (the first two pay for first-touch and caches)."""
    xs = [TOKENS_PER_STEP / r["tok_s"] for r in run["steps"].values() if r["step"] > 2 and r.get("tok_s")]
    return statistics.median(xs) if xs else None


def act_line(run):
    line = next((l for l in run["log"].splitlines() if "activations" in l and "MiB" in l), "")
    return line[line.index("activations"):] if line else None


def peak_rss(run):
    """Peak resident set of the process in MiB (the speed runs are wrapped in /usr/bin/time)."""
    for l in run["log"].splitlines():
        if l.startswith("peak RSS ") and l.endswith(" KiB"):
            return int(l.split()[2]) / 1024
    return None


def final_gaps(runs, n, b):
    """(window, train gap, val gap, eval step) of run n vs run b at n's last step."""
    r, base = runs[n], runs[b]
    s = max(r["steps"])
    w = min(W, s)
    ev = max(r["evals"]) if r["evals"] else None
    vl = r["evals"][ev]["val_main"] if ev is not None else None
    bv = base["evals"].get(ev, {}).get("val_main") if ev is not None else None
    return w, gap(train_at(r, s, w), train_at(base, s, w)), gap(vl, bv), ev


def main():
    runs_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "data", "runs", "fp8")
    have = lambda n: os.path.exists(os.path.join(runs_dir, n, "metrics.jsonl"))
    runs = {n: load(os.path.join(runs_dir, n)) for n in ORDER if have(n)}
    speed = {p: load(os.path.join(runs_dir, "speed-" + p)) for p in SPEED if have("speed-" + p)}
    if "bf16" not in runs:
        sys.exit("fp8_train_report: no bf16 baseline run in " + runs_dir)
    base = runs["bf16"]
    last = max(base["steps"])
    out = []
    out.append(f"Measured by `bash bench/fp8_train_bench.sh` (runs in `{os.path.relpath(runs_dir, ROOT)}`; this section and the plots "
               f"are written by `bench/fp8_train_report.py`). Every run: configs/tiny.json (MLA + DeepSeekMoE with 16 routed "
               f"experts, top-4, aux-loss-free balancing + MTP depth 1; 12.3M parameters) on data/shards-tiny (the main job's "
               f"corpus, 256-token rows), {last} steps of 8 rows = {last * TOKENS_PER_STEP:,} tokens, lr 2e-3 with 20 warmup "
               f"steps and the V3 schedules, 2 threads. Runs with the same seed start from the same init and see the same "
               f"batches in the same order (seed 1 unless named). Loss = the main next-token cross-entropy (MTP and balance "
               f"terms excluded); train loss at a step = mean of the last {W} steps (of all steps, for a run shorter than "
               f"that); validation loss = the trainer's evaluation on 64 held-out rows, in the run's own precision. "
               f"Gap of X vs Y = (L_X − L_Y) / L_Y.\n")
    out.append("### Final losses\n")
    out.append("| run | what | steps | train loss | val loss | vs | train gap | val gap |")
    out.append("|---|---|---|---|---|---|---|---|")
    for n, r in runs.items():
        s = max(r["steps"])
        b = BASE.get(n, "bf16")
        w, tg, vg, ev = final_gaps(runs, n, b) if b in runs else (min(W, s), None, None, None)
        vl = r["evals"][ev]["val_main"] if ev is not None else None
        same = n == b
        out.append(f"| {n} | {WHAT[n]} | {s} | {train_at(r, s, w):.4f} | {'–' if vl is None else f'{vl:.4f}'} | "
                   f"{'–' if same else b} | {'–' if same else pct(tg)} | {'–' if same or vg is None else pct(vg)} |")
    out.append("")
    pairs = [(sd, f, b) for sd, f, b in PAIRS if f in runs and b in runs]
    if pairs:
        out.append("### FP8 vs BF16 per seed, and the noise floor\n")
        out.append("| seed | fp8 train gap | fp8 val gap |")
        out.append("|---|---|---|")
        tgs, vgs = [], []
        for sd, f, b in pairs:
            _, tg, vg, _ = final_gaps(runs, f, b)
            tgs.append(tg); vgs.append(vg)
            out.append(f"| {sd} | {pct(tg)} | {pct(vg)} |")
        if len(pairs) > 1:
            out.append(f"| mean | {pct(statistics.mean(tgs))} | {pct(statistics.mean(vgs))} |")
        out.append("")
        floor = [(n, "bf16") for n in ("bf16-seed2", "bf16-seed3") if n in runs]
        if floor:
            out.append("Noise floor: the same bf16 recipe from another seed, against seed 1 (different init and batches, so "
                       "this is the spread a single run's loss has, not the precision's effect):\n")
            for n, b in floor:
                _, tg, vg, _ = final_gaps(runs, n, b)
                out.append(f"- {n} vs {b}: train {pct(tg)}, val {pct(vg)}")
            out.append("")
    xp = os.path.join(runs_dir, "xeval.jsonl")
    if os.path.exists(xp):
        xe = {}
        for line in open(xp):
            try:
                r = json.loads(line)
                xe.setdefault(r["model"], {})[r["eval_precision"]] = r["result"]["main"]
            except (ValueError, KeyError, TypeError):
                continue
        if xe:
            out.append("Each final model evaluated again in each precision (`dsv3 grad --precision P` on the trainer's 64 "
                       "validation rows, main loss; `xeval.jsonl`): the precision of the evaluation moves a model's loss "
                       "far less than training in another precision does:\n")
            out.append("| model | eval fp32 | eval bf16 | eval fp8 | largest change from its fp32 eval |")
            out.append("|---|---|---|---|---|")
            for m, d in xe.items():
                if "fp32" not in d:
                    continue
                worst = max(abs(v - d["fp32"]) / d["fp32"] for v in d.values())
                out.append(f"| {m} | " + " | ".join(f"{d[p]:.4f}" if p in d else "–" for p in ("fp32", "bf16", "fp8")) +
                           f" | {100 * worst:.3f} % |")
            out.append("")
            pairs_x = [(sd, f, b) for sd, f, b in PAIRS if f in xe and b in xe]
            if pairs_x:
                out.append("fp8 vs bf16 validation gap with both models evaluated in the same precision:\n")
                out.append("| seed | eval fp32 | eval bf16 | eval fp8 |")
                out.append("|---|---|---|---|")
                for sd, f, b in pairs_x:
                    out.append(f"| {sd} | " + " | ".join(pct(gap(xe[f].get(p), xe[b].get(p))) for p in ("fp32", "bf16", "fp8")) + " |")
                out.append("")
    checkpoints = sorted({s for s in (25, 50, 100, 150, last) if W <= s <= last})
    out.append(f"### The gap over the run\n")
    out.append(f"Relative train-loss gap against each run's baseline (mean of the last {W} steps at each point; same batches "
               f"for a same-seed pair):\n")
    out.append("| run | vs | " + " | ".join(f"step {s}" for s in checkpoints) + " |")
    out.append("|---|---|" + "---|" * len(checkpoints))
    for n, r in runs.items():
        b = BASE.get(n, "bf16")
        if n == b or b not in runs:
            continue
        out.append(f"| {n} | {b} | " + " | ".join(pct(gap(train_at(r, s), train_at(runs[b], s))) if s <= max(r["steps"]) else "–"
                                                   for s in checkpoints) + " |")
    out.append("")
    evs = sorted(base["evals"])
    out.append("Relative validation-loss gap at each evaluation:\n")
    out.append("| run | vs | " + " | ".join(f"step {e}" for e in evs) + " |")
    out.append("|---|---|" + "---|" * len(evs))
    for n, r in runs.items():
        b = BASE.get(n, "bf16")
        if n == b or b not in runs:
            continue
        out.append(f"| {n} | {b} | " + " | ".join(pct(gap(r["evals"][e]["val_main"], runs[b]["evals"][e]["val_main"]))
                                                   if e in r["evals"] and e in runs[b]["evals"] else "–" for e in evs) + " |")
    out.append("")
    out.append("### Step time and activation memory\n")
    if speed:
        sb = step_time(speed["bf16"]) if "bf16" in speed else None
        out.append("Quiet speed runs (`speed-*`: nothing else running on the machine; median over steps 3..):\n")
        out.append("| precision | step time | tokens/s | vs bf16 | planned by the trainer | peak RSS of the process |")
        out.append("|---|---|---|---|---|---|")
        for p, r in speed.items():
            st = step_time(r)
            rss = peak_rss(r)
            out.append(f"| {p} | {st:.3f} s | {TOKENS_PER_STEP / st:,.0f} | {'–' if sb is None else f'{st / sb:.2f}x'} | "
                       f"{act_line(r) or '–'} | {'–' if rss is None else f'{rss:.0f} MiB'} |")
        out.append("")
    out.append("Step time of the loss runs themselves (median over steps 3..; these ran while other work shared the two "
               "cores, so read them as rough):\n")
    for n, r in runs.items():
        st = step_time(r)
        if st:
            out.append(f"- {n}: {st:.2f} s/step; {act_line(r) or 'no memory line'}")
    out.append("")
    out.append("Commands:\n")
    out.append("```sh")
    for n, r in list(runs.items()) + [("speed-" + p, r) for p, r in speed.items()]:
        if r["cmd"]:
            out.append(r["cmd"])
    out.append("```")
    out.append("")
    out.append("![loss curves](fp8_train_loss.png)\n")
    out.append("![relative gap](fp8_train_gap.png)")

    # plots
    with tempfile.TemporaryDirectory() as tmp:
        for n, r in runs.items():
            b = runs.get(BASE.get(n, "bf16"))
            with open(os.path.join(tmp, f"{n}.loss"), "w") as f:
                for s in sorted(r["steps"]):
                    v = train_at(r, s)
                    if v is not None:
                        f.write(f"{s} {v}\n")
            with open(os.path.join(tmp, f"{n}.gap"), "w") as f:
                for s in sorted(r["steps"]):
                    w = min(W, max(r["steps"]))
                    g = gap(train_at(r, s, w), train_at(b, s, w)) if b else None
                    if g is not None:
                        f.write(f"{s} {100 * g}\n")
        seed1 = [n for n in runs if "seed" not in n and "-to" not in n]
        lplot = ", ".join(f"'{tmp}/{n}.loss' with lines lw 2 title '{n}'" for n in seed1)
        gplot = ", ".join(f"'{tmp}/{n}.gap' with lines lw {2 if n.startswith('fp8') else 1} "
                          f"title '{n} vs {BASE.get(n, 'bf16')}'" for n in runs if n != BASE.get(n, "bf16"))
        gp = f"""
set terminal pngcairo size 900,520 font "sans,10" noenhanced
set output "{ROOT}/docs/fp8_train_loss.png"
set title "configs/tiny.json on data/shards-tiny, seed 1: main next-token loss (mean of the last {W} steps)"
set xlabel "step (2048 tokens each)"; set ylabel "loss (nats)"; set grid; set key top right
plot {lplot}
set output "{ROOT}/docs/fp8_train_gap.png"
set title "relative train-loss gap, (L - L_base) / L_base, mean of the last {W} steps"
set ylabel "gap (%)"; set yrange [-3:3]; set key outside right
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
