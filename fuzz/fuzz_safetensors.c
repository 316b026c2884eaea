// libFuzzer harness: arbitrary bytes as a .safetensors file (u64 header length, JSON header, data).
// Opening must fail with a message naming the file, or give tensors whose data lie inside the file,
// whose byte counts match dtype x shape, and that dsv3_st_find returns by name. The input is written
// to an in-memory file (memfd) so the real open + mmap path runs. Built by fuzz/run.sh.
#include "core/error.h"
#include "model/safetensors.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int g_fd = -1;
static char g_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_fd < 0) {
        g_fd = memfd_create("fuzz.safetensors", 0);
        if (g_fd < 0) abort();
        snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    }
    if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size) abort();
    dsv3_st st;
    dsv3_error_clear();
    if (dsv3_st_open_file(&st, g_path) != 0) {
        if (!strstr(dsv3_error(), g_path)) abort();
        return 0;
    }
    const unsigned char *base = st.files[0].data;
    for (int i = 0; i < st.ntensors; i++) {
        const dsv3_st_tensor *t = &st.tensors[i];
        size_t off = t->nbytes ? (size_t)((const unsigned char *)t->data - base) : 0;
        if (t->nbytes && (off > size || t->nbytes > size - off)) abort();
        if ((uint64_t)dsv3_st_numel(t) * dsv3_dtype_size(t->dtype) != t->nbytes) abort();
        if (dsv3_st_find(&st, t->name) != t) abort();
        if (i && strcmp(st.tensors[i - 1].name, t->name) >= 0) abort(); // sorted, unique
    }
    dsv3_st_close(&st);
    return 0;
}
