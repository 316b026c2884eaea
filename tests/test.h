// Minimal test harness. Each test binary counts checks, prints a FAIL line with file:line for each
// failure, and ends with `RESULT <name> <passed> <failed>`; tests/run.sh sums these and prints the
// closing line "N passed, N failed". A binary that crashes or exits non-zero counts as a failure.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int t_passed, t_failed;

#define CHECK(cond, ...) do { \
    if (cond) t_passed++; \
    else { t_failed++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

// |a - b| <= atol + rtol * |b|, with b the reference.
static inline int t_close(double a, double b, double atol, double rtol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= atol + rtol * fabs(b);
}

static inline int test_report(const char *name) {
    printf("RESULT %s %d %d\n", name, t_passed, t_failed);
    return t_failed ? 1 : 0;
}

// Path of a fixture relative to the repository root (tests run from the root).
#define FIXTURE(p) ("tests/fixtures/" p)

#include <dirent.h>
static inline int t_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
// The entries of a fixture folder (one case per entry, dot-files skipped), sorted, strdup'ed into
// names[0..max); returns their number, or -1 when the folder is missing.
static inline int t_fixture_cases(const char *root, char **names, int max) {
    DIR *d = opendir(root);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, t_cmp_str);
    return n;
}
