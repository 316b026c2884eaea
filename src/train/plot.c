// Plots of a training run from its metrics.jsonl, drawn by gnuplot (plot.h).
#include "train/plot.h"
#include "core/error.h"
#include "core/fileio.h"
#include "model/config.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define METRICS_MAX ((size_t)1 << 30) // 1 GiB of metrics lines
#define MAX_POINTS 5000               // loss / lr curves: longer runs are averaged into this many points
#define MAX_COLUMNS 600               // heatmap columns (steps are averaged into bins beyond this)

typedef struct { long step; double tokens, lr, loss, main, mtp, lambda; int nmv; double *mv; } step_rec;
typedef struct { long step; double tokens, val_loss, val_main; } eval_rec;

typedef struct {
    step_rec *s; int ns, cs;
    eval_rec *e; int ne, ce;
    int nl; // longest maxvio array
} metrics;

static void metrics_free(metrics *m) {
    for (int i = 0; i < m->ns; i++) free(m->s[i].mv);
    free(m->s); free(m->e);
    memset(m, 0, sizeof *m);
}

static int get_num(const cJSON *o, const char *k, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valuedouble;
    return 0;
}

// One line of metrics.jsonl into m. Returns 0, or -1 with a message naming the line.
static int parse_line(metrics *m, const char *path, int lineno, const char *text) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) return dsv3_errorf("%s: line %d: not valid JSON", path, lineno);
    int rc = 0;
    double x;
    if (!cJSON_IsObject(j)) { rc = dsv3_errorf("%s: line %d: not a JSON object", path, lineno); goto out; }
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(j, "skipped");
    if (get_num(j, "step", &x) == 0) {
        if (cJSON_IsTrue(sk)) goto out; // a non-finite step: skipped by the trainer, left out here
        step_rec r = {.step = (long)x};
        const char *keys[] = {"tokens", "lr", "loss", "main", "mtp"};
        double *dst[] = {&r.tokens, &r.lr, &r.loss, &r.main, &r.mtp};
        for (int i = 0; i < 5; i++)
            if (get_num(j, keys[i], dst[i]) < 0) { rc = dsv3_errorf("%s: line %d: step record without a number \"%s\"", path, lineno, keys[i]); goto out; }
        if (get_num(j, "lambda", &r.lambda) < 0) r.lambda = NAN;
        const cJSON *mv = cJSON_GetObjectItemCaseSensitive(j, "maxvio");
        if (mv && !cJSON_IsArray(mv)) { rc = dsv3_errorf("%s: line %d: \"maxvio\" is not an array", path, lineno); goto out; }
        if (mv) {
            r.nmv = cJSON_GetArraySize(mv);
            r.mv = dsv3_calloc((size_t)(r.nmv ? r.nmv : 1), sizeof(double));
            int i = 0;
            for (const cJSON *e = mv->child; e; e = e->next, i++) {
                if (!cJSON_IsNumber(e)) { free(r.mv); rc = dsv3_errorf("%s: line %d: \"maxvio\"[%d] is not a number", path, lineno, i); goto out; }
                r.mv[i] = e->valuedouble;
            }
        }
        // a repeated step number: a resume from an earlier checkpoint; the later records win
        while (m->ns > 0 && m->s[m->ns - 1].step >= r.step) free(m->s[--m->ns].mv);
        while (m->ne > 0 && m->e[m->ne - 1].step >= r.step) m->ne--;
        if (m->ns == m->cs) { m->cs = m->cs ? 2 * m->cs : 256; m->s = dsv3_realloc(m->s, sizeof(step_rec) * (size_t)m->cs); }
        m->s[m->ns++] = r;
        if (r.nmv > m->nl) m->nl = r.nmv;
    } else if (get_num(j, "eval", &x) == 0) {
        eval_rec r = {.step = (long)x};
        const char *keys[] = {"tokens", "val_loss", "val_main"};
        double *dst[] = {&r.tokens, &r.val_loss, &r.val_main};
        for (int i = 0; i < 3; i++)
            if (get_num(j, keys[i], dst[i]) < 0) { rc = dsv3_errorf("%s: line %d: eval record without a number \"%s\"", path, lineno, keys[i]); goto out; }
        while (m->ne > 0 && m->e[m->ne - 1].step >= r.step) m->ne--;
        if (m->ne == m->ce) { m->ce = m->ce ? 2 * m->ce : 64; m->e = dsv3_realloc(m->e, sizeof(eval_rec) * (size_t)m->ce); }
        m->e[m->ne++] = r;
    } else {
        rc = dsv3_errorf("%s: line %d: neither a step record (\"step\") nor an eval record (\"eval\")", path, lineno);
    }
out:
    cJSON_Delete(j);
    return rc;
}

static int read_metrics(metrics *m, const char *path) {
    memset(m, 0, sizeof *m);
    size_t n = 0;
    char *txt = dsv3_read_file_max(path, METRICS_MAX, "a metrics file", &n);
    if (!txt) return -1;
    if (memchr(txt, 0, n)) {
        int line = 1;
        for (const char *p = txt; *p; p++) line += *p == '\n';
        free(txt);
        return dsv3_errorf("%s: line %d: a NUL byte", path, line);
    }
    int lineno = 0, rc = 0;
    char *p = txt;
    while (*p && rc == 0) {
        lineno++;
        char *nl = strchr(p, '\n');
        const int last_unterminated = nl == NULL;
        if (nl) *nl = 0;
        const char *q = p;
        while (*q == ' ' || *q == '\t' || *q == '\r') q++;
        if (*q) {
            rc = parse_line(m, path, lineno, p);
            if (rc < 0 && last_unterminated) { dsv3_error_clear(); rc = 0; } // a line cut by a kill
        }
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(txt);
    if (rc == 0 && m->ns == 0) rc = dsv3_errorf("%s: no training steps to plot", path);
    if (rc < 0) metrics_free(m);
    return rc;
}

// ---- gnuplot ----------------------------------------------------------------------------------------

// The program to run: $DSV3_GNUPLOT or `gnuplot` found on PATH. Returns a malloc'd path or NULL.
static char *find_gnuplot(void) {
    const char *g = getenv("DSV3_GNUPLOT");
    const char *name = g && *g ? g : "gnuplot";
    if (strchr(name, '/')) {
        if (access(name, X_OK) == 0) return dsv3_strdup(name);
        dsv3_errorf("gnuplot: %s is not an executable program (DSV3_GNUPLOT)", name);
        return NULL;
    }
    const char *path = getenv("PATH");
    if (path) {
        const char *p = path;
        while (1) {
            const char *c = strchr(p, ':');
            size_t len = c ? (size_t)(c - p) : strlen(p);
            char dir[4096];
            if (len == 0) snprintf(dir, sizeof dir, ".");
            else snprintf(dir, sizeof dir, "%.*s", (int)len, p);
            char *full = dsv3_path_join(dir, name);
            struct stat sb;
            if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode) && access(full, X_OK) == 0) return full;
            free(full);
            if (!c) break;
            p = c + 1;
        }
    }
    dsv3_errorf("%s: not found on PATH (the plots need gnuplot: apt-get install gnuplot-nox)", name);
    return NULL;
}

// A gnuplot single-quoted string: ' doubled.
static void gp_str(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

// A shell single-quoted word.
static char *sh_quote(const char *s) {
    size_t n = 3;
    for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
    char *o = dsv3_malloc(n), *q = o;
    *q++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') { memcpy(q, "'\\''", 4); q += 4; }
        else *q++ = *p;
    }
    *q++ = '\'';
    *q = 0;
    return o;
}

static void gp_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, " %.9g", v);
    else fputs(" ?", f);
}

// MoE layer names for the heatmap's y axis from RUN_DIR/config.json, when it matches the arrays:
// the main MoE layers in order, then the MTP blocks. Returns the count of names (0: use indices).
static int layer_names(const char *run_dir, int nl, char (*names)[32]) {
    char *p = dsv3_path_join(run_dir, "config.json");
    char *txt = dsv3_read_file_max(p, DSV3_READ_MAX_JSON, "a config.json", NULL);
    dsv3_config c;
    int n = 0;
    if (txt && dsv3_config_parse(&c, txt, p) == 0) {
        for (int l = 0; l < c.num_hidden_layers && n < nl; l++)
            if (dsv3_layer_is_moe(&c, l)) snprintf(names[n++], 32, "layer %d", l);
        for (int k = 0; k < c.num_nextn_predict_layers && n < nl && c.n_routed_experts > 0; k++)
            snprintf(names[n++], 32, "MTP %d", k + 1);
    }
    dsv3_error_clear();
    free(txt);
    free(p);
    return n == nl ? n : 0;
}

static void write_script(FILE *f, const metrics *m, const char *run_dir, char *const tmp[3]) {
    fputs("set encoding utf8\nset datafile missing '?'\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "  set terminal pngcairo size 960,600 font 'sans,10' noenhanced\n"
          "} else {\n"
          "  set terminal png size 960,600 noenhanced\n"
          "}\n"
          "set grid\nset key top right\n", f);

    // the curves: steps averaged into at most MAX_POINTS points
    const int ns = m->ns, per = (ns + MAX_POINTS - 1) / MAX_POINTS;
    fputs("$steps << EOD\n", f);
    for (int i0 = 0; i0 < ns; i0 += per) {
        const int i1 = i0 + per < ns ? i0 + per : ns;
        double tok = 0, st = 0, lr = 0, main = 0, mtp = 0, lam = 0;
        int nmtp = 0;
        for (int i = i0; i < i1; i++) {
            const step_rec *r = &m->s[i];
            tok += r->tokens; st += r->step; lr += r->lr; main += r->main; lam += r->lambda;
            if (r->lambda > 0) { mtp += r->mtp / r->lambda; nmtp++; }
        }
        const int k = i1 - i0;
        gp_num(f, st / k); gp_num(f, tok / k); gp_num(f, lr / k); gp_num(f, main / k);
        gp_num(f, nmtp ? mtp / nmtp : NAN); gp_num(f, lam / k);
        fputc('\n', f);
    }
    fputs("EOD\n$evals << EOD\n", f);
    for (int i = 0; i < m->ne; i++) {
        gp_num(f, (double)m->e[i].step); gp_num(f, m->e[i].tokens); gp_num(f, m->e[i].val_main); gp_num(f, m->e[i].val_loss);
        fputc('\n', f);
    }
    fputs("EOD\n", f);
    int has_mtp = 0; // an MTP loss was trained (lambda > 0) at some step
    for (int i = 0; i < ns; i++) has_mtp |= m->s[i].lambda > 0;

    // loss.png
    fputs("set output ", f); gp_str(f, tmp[0]); fputc('\n', f);
    const double tmax = fmax(m->s[ns - 1].tokens, m->ne ? m->e[m->ne - 1].tokens : 0);
    const double tdiv = tmax >= 1e10 ? 1e9 : tmax >= 1e7 ? 1e6 : tmax >= 1e4 ? 1e3 : 1;
    fprintf(f, "set title 'Training loss'\nset xlabel '%s'\nset ylabel 'cross-entropy (nats)'\nset format x '%%g'\n"
            "T = %g\n", tdiv == 1e9 ? "tokens (billions)" : tdiv == 1e6 ? "tokens (millions)" : tdiv == 1e3 ? "tokens (thousands)" : "tokens",
            tdiv);
    fputs("plot $steps using ($2/T):4 with lines lw 1.5 lc rgb '#1f77b4' title 'train main', \\\n", f);
    if (has_mtp) fputs("     $steps using ($2/T):5 with lines lw 1 lc rgb '#ff7f0e' title 'train MTP (mtp / lambda)', \\\n", f);
    if (m->ne) fputs("     $evals using ($2/T):3 with linespoints pt 7 ps 0.8 lw 1.5 lc rgb '#2ca02c' title 'validation main', \\\n", f);
    fputs("     1/0 notitle\n", f);

    // lr.png
    fputs("set output ", f); gp_str(f, tmp[1]); fputc('\n', f);
    double lr_max = 0, lam_max = 0; // ranges with a margin above a constant curve
    for (int i = 0; i < ns; i++) { lr_max = fmax(lr_max, m->s[i].lr); lam_max = fmax(lam_max, m->s[i].lambda); }
    fprintf(f, "set title 'Learning rate'\nset xlabel 'optimizer step'\nset ylabel 'learning rate'\nset format x '%%g'\n"
            "set format y '%%.1e'\nset yrange [0:%.9g]\nset key bottom left\n", lr_max > 0 ? 1.08 * lr_max : 1.0);
    if (has_mtp) fprintf(f, "set y2range [0:%.9g]\n", 1.08 * lam_max);
    if (has_mtp)
        fputs("set y2label 'MTP weight lambda'\nset y2tics\n"
              "plot $steps using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'lr', "
              "$steps using 1:6 axes x1y2 with lines dt 2 lw 1.5 lc rgb '#d62728' title 'lambda (right axis)'\n", f);
    else fputs("plot $steps using 1:3 with lines lw 2 lc rgb '#1f77b4' title 'lr'\n", f);
    fputs("unset y2label\nunset y2tics\nset autoscale y2\nset format y '%g'\nset autoscale y\n", f);

    // expert_load.png: MaxVio_batch per MoE layer, steps averaged into at most MAX_COLUMNS bins
    fputs("set output ", f); gp_str(f, tmp[2]); fputc('\n', f);
    fputs("set title 'Expert load imbalance: MaxVio_batch per MoE layer (0 = perfectly balanced)'\n"
          "set xlabel 'optimizer step'\nset ylabel 'MoE layer'\nset cblabel 'MaxVio_batch'\nunset grid\nunset key\n"
          "set palette defined (0 '#000004', 1 '#3b0f70', 2 '#8c2981', 3 '#de4968', 4 '#fe9f6d', 5 '#fcfdbf')\n"
          "set cbrange [0:*]\n", f);
    const int nl = m->nl;
    if (nl == 0) {
        fputs("set label 1 'no MoE layers in this run' at graph 0.5, graph 0.5 center\nset xrange [0:1]\nset yrange [0:1]\n"
              "plot 1/0\n", f);
        return;
    }
    char (*names)[32] = dsv3_calloc((size_t)nl, 32);
    const int named = layer_names(run_dir, nl, names);
    fprintf(f, "set yrange [-0.5:%g]\nset ytics (", nl - 0.5);
    for (int l = 0; l < nl; l++) {
        fputs(l ? ", " : "", f);
        if (named) gp_str(f, names[l]);
        else fprintf(f, "'%d'", l);
        fprintf(f, " %d", l);
    }
    fputs(")\n", f);
    free(names);
    const int cols = ns < MAX_COLUMNS ? ns : MAX_COLUMNS;
    fputs("$mv << EOD\n", f);
    for (int b = 0; b < cols; b++) {
        const int i0 = (int)((long long)b * ns / cols), i1 = (int)((long long)(b + 1) * ns / cols);
        if (i1 <= i0) continue;
        const double s0 = m->s[i0].step, s1 = m->s[i1 - 1].step;
        for (int l = 0; l < nl; l++) {
            double sum = 0;
            int k = 0;
            for (int i = i0; i < i1; i++)
                if (l < m->s[i].nmv) { sum += m->s[i].mv[l]; k++; }
            if (!k) continue;
            fprintf(f, "%.9g %d %.9g %.9g\n", 0.5 * (s0 + s1), l, 0.5 * (s1 - s0 + 1), sum / k);
        }
    }
    fputs("EOD\n", f);
    const double x0 = m->s[0].step - 0.5, x1 = m->s[ns - 1].step + 0.5;
    fprintf(f, "set xrange [%.9g:%.9g]\n", x0, x1);
    fputs("plot $mv using 1:2:3:(0.5):4 with boxxyerror fs solid 1.0 noborder lc palette\n", f);
}

int dsv3_plot_run(const char *run_dir, const char *out_dir) {
    if (!out_dir) out_dir = run_dir;
    char *mpath = dsv3_path_join(run_dir, "metrics.jsonl");
    metrics m;
    int rc = read_metrics(&m, mpath);
    free(mpath);
    if (rc < 0) return 2;
    struct stat sb;
    if (stat(out_dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) { metrics_free(&m); dsv3_errorf("%s: not a folder", out_dir); return 2; }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        metrics_free(&m);
        dsv3_errorf("%s: cannot create: %s", out_dir, strerror(e));
        return e == ENOENT || e == ENOTDIR ? 2 : 1;
    }
    char *gp = find_gnuplot();
    if (!gp) { metrics_free(&m); return 1; }

    static const char *names[3] = {"loss.png", "lr.png", "expert_load.png"};
    char *tmp[3], *fin[3];
    for (int i = 0; i < 3; i++) {
        char t[64];
        snprintf(t, sizeof t, ".%s.tmp.%d", names[i], (int)getpid());
        tmp[i] = dsv3_path_join(out_dir, t);
        fin[i] = dsv3_path_join(out_dir, names[i]);
    }
    char *q = sh_quote(gp);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s", q);
    free(q);
    fflush(stdout);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old); // gnuplot may exit early on an error: report it, do not die
    FILE *f = popen(cmd, "w");
    if (!f) {
        rc = 1;
        dsv3_errorf("%s: cannot start: %s", gp, strerror(errno));
    } else {
        write_script(f, &m, run_dir, tmp);
        fputs("set output\nexit\n", f);
        const int st = pclose(f);
        if (st == -1) { rc = 1; dsv3_errorf("%s: %s", gp, strerror(errno)); }
        else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rc = 1;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 127) dsv3_errorf("%s: could not be run", gp);
            else if (WIFEXITED(st)) dsv3_errorf("%s failed (exit status %d) drawing the plots of %s", gp, WEXITSTATUS(st), run_dir);
            else dsv3_errorf("%s was killed by signal %d drawing the plots of %s", gp, WTERMSIG(st), run_dir);
        }
    }
    sigaction(SIGPIPE, &old, NULL);
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (stat(tmp[i], &sb) != 0 || sb.st_size == 0) { rc = 1; dsv3_errorf("%s: gnuplot wrote no %s", out_dir, names[i]); }
        else if (rename(tmp[i], fin[i]) != 0) { rc = 1; dsv3_errorf("%s: rename failed: %s", fin[i], strerror(errno)); }
    }
    for (int i = 0; i < 3; i++) {
        if (rc) unlink(tmp[i]);
        free(tmp[i]); free(fin[i]);
    }
    free(gp);
    metrics_free(&m);
    return rc;
}
