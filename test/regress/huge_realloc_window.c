/* Regression (fixed): xa_huge_realloc moved a block with mremap while
 * the hash table still maps the old address, unlocked.  Anything that maps
 * a new huge block at the vacated address in that window (another thread;
 * here: this thread, from inside an interposed mremap) gets a second table
 * entry for the same key, and free() of the new block finds the stale entry
 * first and unmaps the old block's size, destroying the neighbour block.
 *
 * mmap is interposed only to pass an address hint, i.e. to pick one of the
 * placements the kernel is free to choose anyway.
 * Default config: a later huge malloc reuses the stale cached range and
 * overlaps a live block; XALLOC_CONF=huge_cache_bytes:0: SIGSEGV. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *hint, *blocker, *b, *c;
static void *volatile old_p;   /* volatile: no -Wuse-after-free on the address checks */
static size_t old_len;
static int armed;

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (hint && !addr && !(flags & MAP_FIXED)) { addr = hint; hint = NULL; }
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

void *mremap(void *p, size_t old, size_t len, int flags, ...)
{
    void *q = (void *)syscall(SYS_mremap, p, old, len, flags, NULL);
    if (armed && q != MAP_FAILED && q != p) {
        armed = 0;
        /* the window: p is unmapped but still in xalloc's table */
        munmap(blocker, 4096);
        hint = p;
        b = malloc(2u << 20);
        printf("b = malloc(2 MiB) = %p: malloc_usable_size %zu (expected 2097152)\n", b, malloc_usable_size(b));
        hint = (char *)p + (2u << 20);
        c = malloc(2u << 20);
        printf("window: moved %p -> %p; new blocks b=%p c=%p\n", p, q, b, c);
        memset(c, 0xc5, 2u << 20);
        free(b);     /* finds the stale entry (the old block's size) first */
    }
    return q;
}

int main(void)
{
    size_t n = (4u << 20) + 1;
    void *a = malloc(n);
    old_p = a;
    old_len = malloc_usable_size(a);
    /* occupy the page after a so that growing in place fails and mremap moves it */
    blocker = (void *)syscall(SYS_mmap, (char *)a + old_len, 4096, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (blocker != (char *)a + old_len) { puts("setup: could not place the blocker page"); return 2; }
    armed = 1;
    a = realloc(a, 8u << 20);
    if (b != old_p || c != (char *)old_p + (2u << 20)) { puts("setup: hints not honoured; inconclusive"); return 2; }
    /* default config: free(b) cached the stale (address, size) pair */
    void *d = malloc(4u << 20);
    if ((char *)d <= (char *)c && (char *)c < (char *)d + malloc_usable_size(d)) {
        printf("d = malloc(4 MiB) = %p overlaps the live block c = %p\n", d, c);
        return 1;
    }
    free(d);
    printf("realloc returned %p; touching c (live, 2 MiB at %p)...\n", a, c);
    fflush(stdout);
    memset(c, 0x5c, 2u << 20);   /* SIGSEGV: free(b) unmapped old_len bytes at old_p */
    printf("c intact: usable %zu\n", malloc_usable_size(c));
    free(c);
    free(a);
    return 0;
}
