// Durable, crash-safe writes and single-writer output folders: the one discipline every output of
// dsv3 follows (datasets now; checkpoints and KV-cache files will reuse it).
//
//   file     written to "<name>.tmp.<pid>" in the same folder, fsync'ed, renamed over <name>, and
//            the folder fsync'ed: after a crash (kill -9, power loss) <name> is either the old file
//            or the complete new one, never a partial one.
//   set      a set of files (a dataset, a checkpoint) is published by its manifest, written last
//            with the same discipline. The new files take names the old manifest does not use, so
//            the previous manifest stays valid until the new one atomically replaces it.
//   folder   one writer at a time: dsv3_dir_lock() takes flock(2) on "<dir>/.lock" (which holds the
//            writer's pid); a second writer is refused with "<dir>: in use by pid N".
//   cleanup  dsv3_dir_clean_stale_temps() removes only the temp files of writers that are dead
//            (the pid in the temp name no longer exists); a live writer's temps are never touched.
#pragma once
#include <stddef.h>
#include <sys/types.h>

// ---------------------------------------------------------------------------------------------
// One file

typedef struct {
    int fd;                 // the temp file; -1 when not open
    char *path, *tmp;       // final name and "<path>.tmp.<pid>"
    unsigned char *buf;     // write buffer (64 KiB)
    size_t nbuf;
    int failed;             // a write failed (its message is recorded)
} dsv3_durable;

// Create "<path>.tmp.<pid>" (truncating one left by a dead process of the same pid; symlinks are
// not followed). Returns 0, or -1 with dsv3_error() naming `path` and the OS reason.
int dsv3_durable_open(dsv3_durable *w, const char *path);
// Append bytes. After a failure every later call fails too and commit removes the temp.
int dsv3_durable_write(dsv3_durable *w, const void *buf, size_t n);
// Flush, fsync the file, close, rename over `path`, fsync the folder. Returns 0, or -1 with
// dsv3_error() (the temp is removed and `path` is untouched). Frees everything either way.
int dsv3_durable_commit(dsv3_durable *w);
// Close and remove the temp; `path` is untouched. Safe on a zeroed or already finished writer.
void dsv3_durable_abort(dsv3_durable *w);
// open + write + commit.
int dsv3_durable_write_file(const char *path, const void *buf, size_t n);

// fsync a folder (so that a rename or unlink in it survives a crash). 0 or -1 with dsv3_error().
// Filesystems that cannot fsync a folder (EINVAL) count as success.
int dsv3_fsync_dir(const char *dir);
// fsync the folder that holds `path`.
int dsv3_fsync_parent(const char *path);

// "<path>.tmp.<pid>" (malloc'd) for this process.
char *dsv3_temp_name(const char *path);
// If `name` ends in ".tmp.<decimal pid>", return 1 and set *base_len (length of the part before
// ".tmp.") and *pid; else 0.
int dsv3_temp_name_parse(const char *name, size_t *base_len, pid_t *pid);

// ---------------------------------------------------------------------------------------------
// One writer per folder

typedef struct {
    int fd;       // the open "<dir>/.lock"; -1 when not held
    char *path;
} dsv3_dirlock;

// Take the folder's lock without waiting (flock LOCK_EX|LOCK_NB on "<dir>/.lock", created if
// missing) and record this pid in it. Returns 0; or -1 with dsv3_error()
// "<dir>: in use by pid N (another writer holds <dir>/.lock)" when someone else holds it (or "in use
// by another process" when its pid is unknown), or the OS reason. The lock goes away with the
// process, however it ends; the .lock file itself stays.
int dsv3_dir_lock(dsv3_dirlock *l, const char *dir);
void dsv3_dir_unlock(dsv3_dirlock *l);

// Remove every regular file "<base>.tmp.<pid>" in `dir` whose process is gone (kill(pid, 0) fails
// with ESRCH) and, when `accept` is given, for which accept(base, base_len, ctx) is non-zero.
// Temps of live processes (this one included) are kept. Returns the number removed, or -1 with
// dsv3_error() when the folder cannot be listed.
long dsv3_dir_clean_stale_temps(const char *dir, int (*accept)(const char *base, size_t base_len, void *ctx),
                                void *ctx);
