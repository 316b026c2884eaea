// core/durable: durable file writes (temp + fsync + rename + folder fsync), temp-name parsing,
// stale-temp cleanup (only dead writers' temps), and the folder lock (a second holder is refused
// with the first one's pid; the lock dies with its process).
#include "test.h"
#include "core/durable.h"
#include "core/error.h"
#include "core/fileio.h"
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static char *at(const char *name) { return dsv3_path_join(dir, name); }

static int exists(const char *name) {
    char *p = at(name);
    struct stat sb;
    int r = lstat(p, &sb) == 0;
    free(p);
    return r;
}

static void put(const char *name, const char *text) {
    char *p = at(name);
    FILE *f = fopen(p, "wb");
    CHECK(f && fputs(text, f) >= 0, "write %s", p);
    if (f) fclose(f);
    free(p);
}

static int content_is(const char *name, const char *want) {
    char *p = at(name);
    size_t n;
    char *b = dsv3_read_file(p, &n);
    free(p);
    int ok = b && n == strlen(want) && memcmp(b, want, n) == 0;
    free(b);
    return ok;
}

// Number of entries in dir (without . and ..).
static int entries(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static pid_t dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    int st;
    waitpid(p, &st, 0);
    return p;
}

static void test_writes(void) {
    char *p = at("out.bin");
    CHECK(dsv3_durable_write_file(p, "hello", 5) == 0, "write_file: %s", dsv3_error());
    CHECK(content_is("out.bin", "hello") && entries() == 1, "content in place, no temp left");
    // a second version replaces it; until commit the old one is what readers see
    dsv3_durable w;
    CHECK(dsv3_durable_open(&w, p) == 0, "open");
    char *tmp = dsv3_temp_name(p);
    CHECK(strcmp(w.tmp, tmp) == 0, "temp name is <path>.tmp.<pid> (%s)", w.tmp);
    // many small writes and one large one (through and past the buffer)
    for (int i = 0; i < 10000; i++) dsv3_durable_write(&w, "ab", 2);
    size_t big = 200000;
    char *b = malloc(big);
    memset(b, 'c', big);
    CHECK(dsv3_durable_write(&w, b, big) == 0, "large write");
    CHECK(content_is("out.bin", "hello"), "old content until commit");
    CHECK(dsv3_durable_commit(&w) == 0, "commit: %s", dsv3_error());
    size_t n;
    char *got = dsv3_read_file(p, &n);
    int ok = got && n == 20000 + big && got[0] == 'a' && got[19999] == 'b' && got[20000] == 'c' && got[n - 1] == 'c';
    CHECK(ok, "new content complete (%zu bytes)", n);
    free(got);
    struct stat sb;
    CHECK(stat(tmp, &sb) != 0 && entries() == 1, "temp renamed away");
    // abort: the target is untouched, the temp gone
    CHECK(dsv3_durable_open(&w, p) == 0, "open 2");
    dsv3_durable_write(&w, "zzz", 3);
    dsv3_durable_abort(&w);
    CHECK(stat(p, &sb) == 0 && sb.st_size == (off_t)(20000 + big) && entries() == 1, "abort leaves the old file");
    dsv3_durable_abort(&w); // twice is harmless
    // errors name the file
    CHECK(dsv3_durable_write_file("/nonexistent-dir/x", "a", 1) == -1 && strstr(dsv3_error(), "/nonexistent-dir/x"),
          "unwritable path (%s)", dsv3_error());
    // a symlink at the temp name is not followed
    char *victim = at("victim");
    put("victim", "keep");
    CHECK(symlink(victim, tmp) == 0, "symlink");
    CHECK(dsv3_durable_open(&w, p) == -1, "temp name taken by a symlink: refused (%s)", dsv3_error());
    CHECK(content_is("victim", "keep"), "symlink target untouched");
    unlink(tmp), unlink(victim);
    CHECK(dsv3_fsync_dir(dir) == 0 && dsv3_fsync_parent(p) == 0, "folder fsync");
    unlink(p);
    free(b), free(tmp), free(victim), free(p);
}

static void test_temp_names(void) {
    size_t bl;
    pid_t pid;
    CHECK(dsv3_temp_name_parse("a.bin.tmp.123", &bl, &pid) == 1 && bl == 5 && pid == 123, "a.bin.tmp.123");
    CHECK(dsv3_temp_name_parse("x.tmp.1.tmp.42", &bl, &pid) == 1 && bl == 7 && pid == 42, "last .tmp. counts");
    const char *no[] = {"a.bin", "a.bin.tmp.", "a.bin.tmp.12x", ".tmp.5", "a.tmp.0", "a.tmp.-3", "a.tmp.1234567890"};
    for (int i = 0; i < 7; i++) CHECK(dsv3_temp_name_parse(no[i], &bl, &pid) == 0, "not a temp: %s", no[i]);
}

static int only_keep_a(const char *base, size_t len, void *ctx) {
    (void)ctx;
    return !(len == 1 && base[0] == 'k');
}

static void test_clean(void) {
    pid_t dead = dead_pid();
    char n1[64], n2[64], n3[64], n4[64];
    snprintf(n1, sizeof n1, "a.bin.tmp.%d", (int)dead);
    snprintf(n2, sizeof n2, "manifest.json.tmp.%d", (int)dead);
    snprintf(n3, sizeof n3, "a.bin.tmp.%d", (int)getpid());
    snprintf(n4, sizeof n4, "k.tmp.%d", (int)dead);
    put(n1, "x"), put(n2, "x"), put(n3, "x"), put(n4, "x"), put("a.bin", "x");
    char sub[128];
    snprintf(sub, sizeof sub, "%s/d.tmp.%d", dir, (int)dead);
    CHECK(mkdir(sub, 0777) == 0, "a folder with a temp-like name");
    long r = dsv3_dir_clean_stale_temps(dir, only_keep_a, NULL);
    CHECK(r == 2, "two stale temps removed (%ld)", r);
    CHECK(!exists(n1) && !exists(n2), "dead writer's temps (shard and manifest) removed");
    CHECK(exists(n3), "a live writer's temp (this process) kept");
    CHECK(exists(n4), "a temp the filter rejects kept");
    CHECK(exists("a.bin") && exists(sub + strlen(dir) + 1), "other files and folders kept");
    CHECK(dsv3_dir_clean_stale_temps("/nonexistent-dir", NULL, NULL) == -1, "unlistable folder: error");
    rmdir(sub);
    char *p;
    unlink(p = at(n3)), free(p);
    unlink(p = at(n4)), free(p);
    unlink(p = at("a.bin")), free(p);
}

static void test_lock(void) {
    dsv3_dirlock a, b;
    CHECK(dsv3_dir_lock(&a, dir) == 0, "lock: %s", dsv3_error());
    CHECK(dsv3_dir_lock(&b, dir) == -1, "second lock in the same process refused");
    char want[64];
    snprintf(want, sizeof want, "in use by pid %d", (int)getpid());
    CHECK(strstr(dsv3_error(), want) && strstr(dsv3_error(), dir), "names the holder: %s", dsv3_error());
    dsv3_dir_unlock(&a);
    CHECK(dsv3_dir_lock(&b, dir) == 0, "free again after unlock");
    dsv3_dir_unlock(&b);
    // another process holds it; killed with SIGKILL, the lock goes with it
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t child = fork();
    if (child == 0) {
        dsv3_dirlock c;
        char ok = dsv3_dir_lock(&c, dir) == 0 ? 'y' : 'n';
        if (write(go[1], &ok, 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    char ok = 0;
    CHECK(read(go[0], &ok, 1) == 1 && ok == 'y', "child took the lock");
    snprintf(want, sizeof want, "in use by pid %d", (int)child);
    CHECK(dsv3_dir_lock(&b, dir) == -1 && strstr(dsv3_error(), want), "held by the child: %s", dsv3_error());
    kill(child, SIGKILL);
    int st;
    waitpid(child, &st, 0);
    CHECK(dsv3_dir_lock(&b, dir) == 0, "free after kill -9 of the holder: %s", dsv3_error());
    dsv3_dir_unlock(&b);
    close(go[0]), close(go[1]);
    CHECK(dsv3_dir_lock(&b, "/nonexistent-dir") == -1 && strstr(dsv3_error(), "/nonexistent-dir"), "no folder: error");
    char *p = at(".lock");
    unlink(p);
    free(p);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/dsv3_test_durable_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_writes();
    test_temp_names();
    test_clean();
    test_lock();
    CHECK(rmdir(dir) == 0, "folder left empty");
    return test_report("test_durable");
}
