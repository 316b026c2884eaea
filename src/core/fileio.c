#include "core/fileio.h"
#include "core/error.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int dsv3_mmap_open(dsv3_mmap *m, const char *path) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return dsv3_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return dsv3_errorf("%s: cannot stat: %s", path, strerror(errno)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return dsv3_errorf("%s: not a regular file", path); }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) { close(fd); return dsv3_errorf("%s: mmap failed: %s", path, strerror(errno)); }
        m->data = p;
    }
    close(fd);
    m->path = dsv3_strdup(path);
    return 0;
}

void dsv3_mmap_close(dsv3_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

char *dsv3_read_file(const char *path, size_t *size_out) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) { dsv3_errorf("%s: cannot open: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = dsv3_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) { cap *= 2; buf = dsv3_realloc(buf, cap); }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (err) { free(buf); dsv3_errorf("%s: read error", path); return NULL; }
    buf[n] = 0;
    if (size_out) *size_out = n;
    return buf;
}

int dsv3_writer_open(dsv3_writer *w, const char *path) {
    memset(w, 0, sizeof *w);
    if (strcmp(path, "-") == 0) { w->f = stdout; return 0; }
    w->path = dsv3_strdup(path);
    size_t n = strlen(path) + 32;
    w->tmp = dsv3_malloc(n);
    snprintf(w->tmp, n, "%s.tmp.%d", path, (int)getpid());
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        int e = errno;
        free(w->path); free(w->tmp);
        memset(w, 0, sizeof *w);
        return dsv3_errorf("%s: cannot create: %s", path, strerror(e));
    }
    return 0;
}

int dsv3_writer_write(dsv3_writer *w, const void *buf, size_t n) {
    if (w->failed) return -1;
    if (n && fwrite(buf, 1, n, w->f) != n) {
        w->failed = 1;
        return dsv3_errorf("%s: write failed: %s", w->path ? w->path : "stdout", strerror(errno));
    }
    return 0;
}

int dsv3_writer_commit(dsv3_writer *w) {
    if (!w->path) { // stdout
        int r = w->failed ? -1 : 0;
        if (fflush(w->f) != 0 && !w->failed) r = dsv3_errorf("stdout: write failed: %s", strerror(errno));
        memset(w, 0, sizeof *w);
        return r;
    }
    int bad = w->failed, close_err = 0;
    if (fclose(w->f) != 0) bad = 1, close_err = errno;
    w->f = NULL;
    if (!bad && rename(w->tmp, w->path) != 0) bad = 1, dsv3_errorf("%s: cannot rename into place: %s", w->path, strerror(errno));
    else if (bad && !w->failed) dsv3_errorf("%s: write failed: %s", w->path, strerror(close_err));
    // (a failed write already recorded its own message with the OS reason)
    if (bad) unlink(w->tmp);
    free(w->path); free(w->tmp);
    memset(w, 0, sizeof *w);
    return bad ? -1 : 0;
}

void dsv3_writer_abort(dsv3_writer *w) {
    if (w->path) { if (w->f) fclose(w->f); unlink(w->tmp); free(w->path); free(w->tmp); }
    memset(w, 0, sizeof *w);
}

char *dsv3_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = dsv3_malloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int dsv3_file_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }
