// Durable writes, folder locks and stale-temp cleanup (see durable.h).
#include "core/durable.h"
#include "core/error.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DURABLE_BUF (64u << 10)

char *dsv3_temp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *t = dsv3_malloc(n);
    snprintf(t, n, "%s.tmp.%ld", path, (long)getpid());
    return t;
}

int dsv3_temp_name_parse(const char *name, size_t *base_len, pid_t *pid) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    for (const char *n; (n = strstr(t + 1, ".tmp.")); t = n) {} // the last ".tmp."
    const char *d = t + 5;
    if (!*d || strlen(d) > 9) return 0; // pids fit in 9 digits (Linux: at most 4194304)
    long v = 0;
    for (const char *p = d; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0 || t == name) return 0;
    *base_len = (size_t)(t - name);
    *pid = (pid_t)v;
    return 1;
}

// write(2) all of it, retrying on EINTR and short writes.
static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k, n -= (size_t)k;
    }
    return 0;
}

int dsv3_durable_open(dsv3_durable *w, const char *path) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    char *tmp = dsv3_temp_name(path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return dsv3_errorf("%s: cannot create: %s", path, strerror(e));
    }
    w->fd = fd, w->tmp = tmp, w->path = dsv3_strdup(path);
    w->buf = dsv3_malloc(DURABLE_BUF);
    return 0;
}

static int durable_flush(dsv3_durable *w) {
    if (w->failed) return -1;
    if (w->nbuf && write_all(w->fd, w->buf, w->nbuf)) {
        w->failed = 1;
        return dsv3_errorf("%s: write failed: %s", w->path, strerror(errno));
    }
    w->nbuf = 0;
    return 0;
}

int dsv3_durable_write(dsv3_durable *w, const void *buf, size_t n) {
    if (w->failed || w->fd < 0) return -1;
    const unsigned char *p = buf;
    if (w->nbuf + n <= DURABLE_BUF) {
        if (n) memcpy(w->buf + w->nbuf, p, n);
        w->nbuf += n;
        return 0;
    }
    if (durable_flush(w)) return -1;
    if (n >= DURABLE_BUF) { // large writes go straight to the file
        if (write_all(w->fd, p, n)) {
            w->failed = 1;
            return dsv3_errorf("%s: write failed: %s", w->path, strerror(errno));
        }
        return 0;
    }
    memcpy(w->buf, p, n);
    w->nbuf = n;
    return 0;
}

static void durable_free(dsv3_durable *w) {
    free(w->path), free(w->tmp), free(w->buf);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

void dsv3_durable_abort(dsv3_durable *w) {
    if (w->tmp) {
        if (w->fd >= 0) close(w->fd);
        unlink(w->tmp);
    }
    durable_free(w);
}

int dsv3_fsync_dir(const char *dir) {
    int fd = open(*dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return dsv3_errorf("%s: cannot open folder to sync it: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
        rc = dsv3_errorf("%s: cannot sync folder: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

int dsv3_fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dsv3_fsync_dir(".");
    if (slash == path) return dsv3_fsync_dir("/");
    char *dir = dsv3_strdup(path);
    dir[slash - path] = 0;
    int rc = dsv3_fsync_dir(dir);
    free(dir);
    return rc;
}

int dsv3_durable_commit(dsv3_durable *w) {
    if (!w->tmp) return dsv3_errorf("durable writer: commit without open");
    int rc = durable_flush(w);
    if (!rc && fsync(w->fd) != 0) rc = dsv3_errorf("%s: cannot sync to disk: %s", w->path, strerror(errno));
    if (close(w->fd) != 0 && !rc) rc = dsv3_errorf("%s: write failed: %s", w->path, strerror(errno));
    w->fd = -1;
    if (!rc && rename(w->tmp, w->path) != 0)
        rc = dsv3_errorf("%s: cannot rename into place: %s", w->path, strerror(errno));
    if (rc) {
        unlink(w->tmp);
        durable_free(w);
        return -1;
    }
    // The file is in place; make the rename itself durable.
    rc = dsv3_fsync_parent(w->path);
    durable_free(w);
    return rc;
}

int dsv3_durable_write_file(const char *path, const void *buf, size_t n) {
    dsv3_durable w;
    if (dsv3_durable_open(&w, path)) return -1;
    if (dsv3_durable_write(&w, buf, n)) {
        dsv3_durable_abort(&w);
        return -1;
    }
    return dsv3_durable_commit(&w);
}

// ---------------------------------------------------------------------------------------------
// Folder lock

static int pid_alive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH); }

// The pid recorded in a held lock file, or 0 when unknown (not yet written, garbage, or dead).
static pid_t lock_holder(int fd) {
    for (int attempt = 0; attempt < 20; attempt++) { // the holder writes its pid just after locking
        char b[32];
        ssize_t n = pread(fd, b, sizeof b - 1, 0);
        if (n > 0) {
            b[n] = 0;
            char *end;
            long v = strtol(b, &end, 10);
            if (end != b && v > 0 && v < (1L << 30) && pid_alive((pid_t)v)) return (pid_t)v;
            if (end != b && *end == '\n') return 0; // complete but stale
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int dsv3_dir_lock(dsv3_dirlock *l, const char *dir) {
    l->fd = -1, l->path = NULL;
    char *path;
    {
        size_t n = strlen(dir) + 8;
        path = dsv3_malloc(n);
        snprintf(path, n, "%s%s.lock", dir, *dir && dir[strlen(dir) - 1] == '/' ? "" : "/");
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        int e = errno;
        dsv3_errorf("%s: cannot open the lock file %s: %s", dir, path, strerror(e));
        free(path);
        return -1;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        if (e == EWOULDBLOCK) {
            pid_t holder = lock_holder(fd);
            if (holder) dsv3_errorf("%s: in use by pid %ld (another writer holds %s)", dir, (long)holder, path);
            else dsv3_errorf("%s: in use by another process (it holds %s)", dir, path);
        } else {
            dsv3_errorf("%s: cannot lock %s: %s", dir, path, strerror(e));
        }
        close(fd);
        free(path);
        return -1;
    }
    char b[32];
    int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, b, (size_t)n, 0) != n) {
        int e = errno;
        dsv3_errorf("%s: cannot write the lock file %s: %s", dir, path, strerror(e));
        close(fd); // releases the lock
        free(path);
        return -1;
    }
    l->fd = fd, l->path = path;
    return 0;
}

void dsv3_dir_unlock(dsv3_dirlock *l) {
    if (l->fd >= 0) {
        if (ftruncate(l->fd, 0) != 0) {} // an empty lock file names no holder; failure is harmless
        close(l->fd);                    // releases the flock
    }
    free(l->path);
    l->fd = -1, l->path = NULL;
}

// ---------------------------------------------------------------------------------------------
// Cleanup

long dsv3_dir_clean_stale_temps(const char *dir, int (*accept)(const char *base, size_t base_len, void *ctx),
                                void *ctx) {
    DIR *dp = opendir(dir);
    if (!dp) return dsv3_errorf("%s: cannot list folder: %s", dir, strerror(errno));
    long removed = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t bl;
        pid_t pid;
        if (!dsv3_temp_name_parse(de->d_name, &bl, &pid)) continue;
        if (accept && !accept(de->d_name, bl, ctx)) continue;
        if (pid_alive(pid)) continue; // a live writer's file (or pid reuse: kept, harmless)
        size_t n = strlen(dir) + strlen(de->d_name) + 2;
        char *p = dsv3_malloc(n);
        snprintf(p, n, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (unlink(p) == 0) removed++;
            else if (errno != ENOENT)
                fprintf(stderr, "dsv3: warning: cannot remove stale temp file %s: %s\n", p, strerror(errno));
        }
        free(p);
    }
    closedir(dp);
    return removed;
}
