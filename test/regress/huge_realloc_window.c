/* Regression: a huge realloc that moves a block works with the lock
 * dropped while the kernel moves its pages (mremap).  An older xalloc
 * left the block's old address in its table during that window, and a
 * block allocated there meanwhile got a second entry for the same key
 * (free then unmapped the wrong size).  Today the block is out of the
 * table, its destination is taken from the free extents and its old range
 * is not free until the move is done; this checks that allocations and
 * frees made inside the window (here from an interposed mremap, as
 * another thread could) get neither range and corrupt nothing.
 * Exit 0 = pass, 2 = the realloc did not move the block (inconclusive). */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)
enum { NWIN = 4 };

/* volatile: the compiler takes realloc for a builtin that touches none of
 * these, but the interposed mremap below runs inside it */
static char *volatile a_old, *volatile win[NWIN];
static volatile size_t a_len;
static char *volatile moved_to;
static volatile size_t moved_len;
static volatile int armed;
static char *volatile clash;   /* a window block inside the moving block's ranges */

static int overlaps(const char *p, size_t n, const char *q, size_t m) { return p < q + m && q < p + n; }

void *mremap(void *p, size_t old, size_t len, int flags, ...)
{
    void *to = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    void *q = (void *)syscall(SYS_mremap, p, old, len, flags, to);
    if (armed && q != MAP_FAILED && p == a_old) {
        armed = 0;
        moved_to = q;
        moved_len = len;
        /* the window: other huge blocks come and go */
        for (int i = 0; i < NWIN; i++) {
            win[i] = malloc(3 * MiB);
            if (!win[i]) continue;
            if (overlaps(win[i], 3 * MiB, a_old, a_len) || overlaps(win[i], 3 * MiB, q, len)) clash = win[i];
            memset(win[i], 0x77, 3 * MiB);
        }
        free(win[0]);
        free(win[2]);
        win[0] = win[2] = NULL;
    }
    return q;
}

int main(void)
{
    char *a = malloc(4 * MiB + 1);
    char *wall = malloc(2 * MiB);          /* likely right after a: no growth in place */
    if (!a || !wall) return 1;
    a_old = a;
    a_len = malloc_usable_size(a);
    for (size_t o = 0; o < a_len; o += 4096) a[o] = (char)(o >> 12);
    armed = 1;
    char *b = realloc(a, 16 * MiB);
    armed = 0;
    if (!b) { puts("realloc failed"); return 1; }
    if (!moved_to) { puts("setup: the realloc moved no pages with mremap; inconclusive"); return 2; }
    if (clash) {
        printf("block %p made in the window lies in the moving block's old or new range (%p -> %p)\n",
               (void *)clash, (void *)a_old, (void *)b);
        return 1;
    }
    for (size_t o = 0; o < a_len; o += 4096)
        if (b[o] != (char)(o >> 12)) { printf("page %zu of the moved block lost\n", o >> 12); return 1; }
    for (int i = 0; i < NWIN; i++) {
        if (!win[i]) continue;
        if (overlaps(win[i], 3 * MiB, b, 16 * MiB) || overlaps(win[i], 3 * MiB, a_old, a_len)) {
            printf("block %p made in the window overlaps the moving block (%p -> %p)\n", (void *)win[i],
                   (void *)a_old, (void *)b);
            return 1;
        }
        for (size_t o = 0; o < 3 * MiB; o += 4096)
            if (win[i][o] != 0x77) { printf("window block %d corrupted\n", i); return 1; }
    }
    char *d = malloc(16 * MiB);            /* may reuse a's old range, never b's */
    if (!d || overlaps(d, 16 * MiB, b, 16 * MiB)) { puts("a new block overlaps the moved one"); return 1; }
    memset(d, 0x11, 16 * MiB);
    for (size_t o = 0; o < a_len; o += 4096)
        if (b[o] != (char)(o >> 12)) { puts("the moved block was overwritten"); return 1; }
    printf("moved %p -> %p (%zu bytes by mremap); window blocks intact\n", (void *)a_old, (void *)b, moved_len);
    free(d);
    free(b);
    free(wall);
    for (int i = 0; i < NWIN; i++) free(win[i]);
    return 0;
}
