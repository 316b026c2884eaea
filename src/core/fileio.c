#include "core/fileio.h"
#include "core/durable.h"
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

const char *dsv3_fmt_bytes(char *buf, size_t cap, unsigned long long n) {
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = -1;
    unsigned long long v = n;
    while (v >= 1024 && v % 1024 == 0 && u < 3) v /= 1024, u++;
    if (u < 0) snprintf(buf, cap, "%llu bytes", n);
    else snprintf(buf, cap, "%llu %s", v, units[u]);
    return buf;
}

char *dsv3_read_file_max(const char *path, size_t max, const char *what, size_t *size_out) {
    const int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "stdin" : path;
    char lim[32];
    if (max > ((size_t)1 << 40)) max = (size_t)1 << 40;
    int fd = is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { dsv3_errorf("%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        if (!is_stdin) close(fd);
        dsv3_errorf("%s: cannot stat: %s", name, strerror(e));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        if (!is_stdin) close(fd);
        dsv3_errorf("%s: is a directory (expected %s)", name, what ? what : "a file");
        return NULL;
    }
    if (S_ISREG(st.st_mode) && (unsigned long long)st.st_size > max) {
        if (!is_stdin) close(fd);
        dsv3_errorf("%s: %lld bytes, more than the %s limit for %s", name, (long long)st.st_size,
                    dsv3_fmt_bytes(lim, sizeof lim, max), what ? what : "a file read whole");
        return NULL;
    }
    // Regular files: one buffer of the right size. Others (devices, pipes): grow up to max + 1 bytes,
    // so that reading one byte past the cap proves the input too large.
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 2 : ((size_t)1 << 16), n = 0;
    if (cap > max + 2) cap = max + 2;
    char *buf = dsv3_malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            size_t nc = cap * 2 < max + 2 ? cap * 2 : max + 2;
            buf = dsv3_realloc(buf, nc);
            cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            if (!is_stdin) close(fd);
            free(buf);
            dsv3_errorf("%s: read error: %s", name, strerror(e));
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max) {
            if (!is_stdin) close(fd);
            free(buf);
            dsv3_errorf("%s: more than the %s limit for %s", name, dsv3_fmt_bytes(lim, sizeof lim, max),
                        what ? what : "a file read whole");
            return NULL;
        }
    }
    if (!is_stdin) close(fd);
    buf[n] = 0;
    if (size_out) *size_out = n;
    return buf;
}

char *dsv3_read_file(const char *path, size_t *size_out) {
    return dsv3_read_file_max(path, DSV3_READ_MAX_DEFAULT, NULL, size_out);
}

int dsv3_stdout_flush(void) {
    errno = 0;
    int bad = fflush(stdout) != 0;
    int e = errno;
    if (bad || ferror(stdout))
        return dsv3_errorf("stdout: write failed: %s", bad && e ? strerror(e) : "an earlier write returned an error");
    return 0;
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
    if (!bad && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) bad = 1, close_err = errno; // durable: core/durable.h
    if (fclose(w->f) != 0) bad = 1, close_err = errno;
    w->f = NULL;
    if (!bad && rename(w->tmp, w->path) != 0) bad = 1, dsv3_errorf("%s: cannot rename into place: %s", w->path, strerror(errno));
    else if (bad && !w->failed) dsv3_errorf("%s: write failed: %s", w->path, strerror(close_err));
    // (a failed write already recorded its own message with the OS reason)
    if (bad) unlink(w->tmp);
    else dsv3_fsync_parent(w->path); // make the rename durable (best effort: the file is in place)
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
