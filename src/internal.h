/* Common definitions for every xalloc source file: compiler attributes,
 * geometry constants and the naming rule (module prefix xa_<module>_). */
#ifndef XA_INTERNAL_H
#define XA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XA_HIDDEN   __attribute__((visibility("hidden")))
#define XA_EXPORT   __attribute__((visibility("default")))
#define XA_NOINLINE __attribute__((noinline))
#define XA_INLINE   static inline __attribute__((always_inline))
#define XA_COLD     __attribute__((cold))
/* The public fast paths (malloc, free, operator new and delete) start a
 * cache line, so each spans the fewest lines and fetch blocks wherever the
 * linker places it: 16 bytes into a line, malloc makes a malloc/free loop
 * (glibc-simple) 1.4x slower at the same instruction count. */
#define XA_ENTRY    __attribute__((aligned(64)))
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* Large zero-initialised tables that are touched a page at a time (the
 * chunk map, the huge-block map and shards, buffers) are placed after
 * .bss (src/layout.ld, in the shared library), so the small variables of
 * all files share a few pages instead of being scattered between the
 * tables: each page touched is a page of memory in every process.  A
 * .bss. name keeps the section NOBITS with gcc and clang alike. */
#define XA_BSS_TABLE __attribute__((section(".bss.xalloc_tables")))

#ifndef XA_DEBUG
#define XA_DEBUG 0
#endif
static const bool xa_config_debug = XA_DEBUG;
#ifndef XA_STATS
#define XA_STATS 1
#endif
static const bool xa_config_stats = XA_STATS;

/* Chunks: every small and large allocation lives in a chunk of this size,
 * aligned to it, so p & ~XA_CHUNK_MASK is the chunk header. */
#define XA_CHUNK_SHIFT 22
#define XA_CHUNK_SIZE  ((size_t)1 << XA_CHUNK_SHIFT)
#define XA_CHUNK_MASK  (XA_CHUNK_SIZE - 1)
/* User addresses: below 2^47 on x86_64 (the kernel maps nothing higher
 * unless asked to with a hint), 2^48 elsewhere (aarch64 48-bit VA).  The
 * chunk map has one byte per chunk-sized range of it. */
#if defined(__x86_64__)
#define XA_VA_BITS     47
#else
#define XA_VA_BITS     48
#endif

/* Size geometry (see sizeclass.c for the derivation). */
#define XA_MIN_ALIGN    16
#define XA_SMALL_MAX    ((size_t)32768)       /* largest small class */
#define XA_NSMALL       40                     /* number of small classes */
/* The fast paths' class numbers come scaled by this and shifted by one,
 * (class + 1) * XA_BIN_SCALE (malloc's size table, pageinfo.cls_scaled): the
 * thread cache's 48-byte bins, which follow a dummy bin at offset 0, are
 * then found with the x86 addressing mode's scale of 8, no shift, and a
 * page that holds no slab says 0, as the page map's untouched entries do
 * (tcache.h, chunk.h). */
#define XA_BIN_SCALE    6
#define XA_HUGE_MIN     ((size_t)256 << 10)    /* >= this: carved from huge regions (huge.c) */
#define XA_REMAP_MIN    ((size_t)2 << 20)      /* >= this: realloc moves pages (mremap), not bytes */
#define XA_PAGE_MAX_SHIFT 16                   /* 64 KiB pages at most */
#define XA_PAGE_MIN_SHIFT 12

#define XA_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((uintptr_t)(a) - 1))

#endif
