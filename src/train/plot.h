// Plots of a training run (`dsv3 plot RUN_DIR`, and the end of `dsv3 train`): reads
// RUN_DIR/metrics.jsonl and writes, with gnuplot (pngcairo, or png where cairo is missing):
//   loss.png         train loss (main, unweighted MTP = mtp / lambda) and validation loss vs tokens
//   lr.png           learning rate vs step (with the MTP weight lambda on the right axis)
//   expert_load.png  heatmap of MaxVio_batch per MoE layer (the `maxvio` array) over steps
// Skipped (non-finite) steps are left out. A resumed run appends to metrics.jsonl; when a step
// number repeats (a resume from an earlier checkpoint), the later records replace the earlier
// ones from that step on. A last line without its newline that does not parse (a run killed while
// writing it) is ignored; any other malformed line is an error naming the line.
#pragma once

// Writes the three PNGs into out_dir (NULL: run_dir; created if missing). Each PNG is written
// under a temporary name and renamed, so a failure leaves no partial image. Returns 0; 2 for a
// missing or malformed metrics file, an out_dir that is not a folder, or no training steps; 1 when
// gnuplot is missing or fails (the program is $DSV3_GNUPLOT when set, else `gnuplot` on PATH).
// On failure dsv3_error() holds the message.
int dsv3_plot_run(const char *run_dir, const char *out_dir);
