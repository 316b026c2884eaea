// GPT-2 byte-level alphabet: every byte maps to one printable code point, so that byte strings can
// be stored as text in tokenizer.json. Bytes 33-126, 161-172 and 174-255 map to themselves; the
// other 68 bytes map, in increasing byte order, to U+0100, U+0101, ... U+0143.
#include "tokenizer/tokenizer.h"
#include <pthread.h>

static char g_b2u[256][3];       // UTF-8 of the mapped code point, NUL-terminated
static short g_cp2b[0x144];      // code point (< 0x144) -> byte, -1 if not in the alphabet
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int byte_is_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

static void build_tables(void) {
    for (int i = 0; i < 0x144; i++) g_cp2b[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int cp = byte_is_printable(b) ? b : 256 + extra++;
        g_cp2b[cp] = (short)b;
        if (cp < 0x80) {
            g_b2u[b][0] = (char)cp;
            g_b2u[b][1] = 0;
        } else {
            g_b2u[b][0] = (char)(0xC0 | (cp >> 6));
            g_b2u[b][1] = (char)(0x80 | (cp & 0x3F));
            g_b2u[b][2] = 0;
        }
    }
}

const char *dsv3_byte_to_unicode(unsigned char b) {
    pthread_once(&g_once, build_tables);
    return g_b2u[b];
}

int dsv3_unicode_to_byte(const char *s, size_t len, size_t *used) {
    pthread_once(&g_once, build_tables);
    const unsigned char *u = (const unsigned char *)s;
    if (len >= 1 && u[0] < 0x80) {
        *used = 1;
        return g_cp2b[u[0]];
    }
    if (len >= 2 && (u[0] & 0xE0) == 0xC0 && (u[1] & 0xC0) == 0x80) {
        int cp = ((u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        if (cp < 0x80 || cp >= 0x144) return -1;
        *used = 2;
        return g_cp2b[cp];
    }
    return -1;
}
