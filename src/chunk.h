/* Chunks, spans, the chunk map and the page map.
 *
 * A chunk is XA_CHUNK_SIZE bytes aligned to its size.  Its first pages hold
 * the header, followed by a guard page: struct xa_chunk, then one span
 * descriptor slot per page.  The other guard page is the chunk's last
 * page, or in the huge layout (xa_chunk_huge_layout: 4 KiB pages, 2 MiB
 * huge pages, thp:auto or always, neither meshing nor secure mode) its
 * first page, the header starting after it.  Either way a write running
 * off the end of a chunk's last span faults before it reaches the next
 * chunk's header; in the huge layout the chunk's second half is one whole
 * huge page of span area, which asks for a transparent huge page once
 * its arena is big (arena.c, xa_chunk_purged).  What free()
 * needs of a 4 KiB unit, its xa_pageinfo (8 bytes), lives in the page map
 * below, or in the header where the page map does not reach.
 * The rest of the chunk is carved into spans: runs of pages that are free,
 * a slab of one size class, or one large allocation.  A span's descriptor
 * lives in the slot of its first page; a slab uses the slots of its other
 * pages for its free-slot bitmap (metadata out of line, never in user
 * memory).
 *
 * The chunk map is one byte per chunk-aligned address range in the whole
 * user address space (32 MiB of lazily touched bss on x86_64, 64 MiB where
 * user space has 48 bits): the slow paths test the byte before they
 * dereference anything, so foreign pointers are caught.
 *
 * The page map is one xa_pageinfo per 4 KiB unit of the whole user address
 * space, indexed by address >> 12: a read-only reservation of 256 GiB
 * (x86_64, xa_os_reserve: no commit charge, not copied by fork, out of
 * core files) of which each chunk's part (8 KiB, the same as the header
 * table it replaces) is writable while the chunk lives.  free()'s fast path
 * reads p's entry after one range test, with no chunk-map test: an entry
 * that was never written, or was cleared when its chunk went, reads as
 * zero, whose scaled class 0 picks the thread cache's dummy bin, which
 * accepts nothing.  So a foreign pointer costs free() nothing extra and
 * is still caught by the slow path; nothing is read from p's memory
 * before its entry says p starts an object of a slab.  Where the kernel
 * refuses the whole reservation (an address-space limit: a map of at most
 * 1/16 of it is tried; valgrind's smaller address space) a smaller map is
 * kept only if it covers the addresses the kernel hands out (its own);
 * chunks it does not cover (or whose part the kernel would not make
 * writable) keep their page info in their header, and frees of their
 * objects take the slow path, which finds it through the chunk map. */
#ifndef XA_CHUNK_H
#define XA_CHUNK_H
#include "internal.h"
#include "os.h"

struct xa_arena;

/* Span states. */
/* PURGING: free pages out of the bins while madvise runs without the lock;
 * neither merged with nor accepted by free(). */
/* MESHED: a slab whose pages are another slab's (its owner's), mesh.h;
 * it keeps its own bitmap, and its pages their class. */
enum { XA_SPAN_FREE = 0, XA_SPAN_SLAB = 1, XA_SPAN_LARGE = 2, XA_SPAN_HEADER = 3, XA_SPAN_PURGING = 4,
       XA_SPAN_MESHED = 5 };
/* State of a free span's pages, ordered so a merge takes the maximum:
 * CLEAN (purged, read as zero), MUZZY (MADV_FREE'd: the kernel may take
 * them), DIRTY (resident, but for the span's `unfaulted` pages: a purged
 * slab's that emptied, which went back dirty to merge with its
 * neighbours). */
enum { XA_PAGES_CLEAN = 0, XA_PAGES_MUZZY = 1, XA_PAGES_DIRTY = 2 };
/* pageinfo.cls for pages that are not part of a slab: the index of the
 * thread cache's dummy bin (tcache.h), which never accepts an object. */
#define XA_CLS_NONE XA_NSMALL

/* Page information is kept per 4 KiB unit whatever the page size, so the
 * fast path indexes it with a constant shift. */
#define XA_UNIT_SHIFT  12
#define XA_CHUNK_UNITS (XA_CHUNK_SIZE >> XA_UNIT_SHIFT)

struct xa_pageinfo {
  uint32_t start32;     /* low 32 bits of the span's address: for a slab,
                           (uint32_t)p - start32 is p's offset in it */
  uint16_t first;       /* page index of that first page */
  uint8_t cls;          /* small class of the slab, or XA_CLS_NONE */
  uint8_t cls_scaled;   /* xa_class_scale(cls) (sizeclass.h): free()'s bin;
                           0 (the dummy bin) if not a slab */
};

/* Span descriptor: 64 bytes; a slab's bitmap follows it. */
struct xa_span {
  union {
    struct { struct xa_span *next, *prev; };  /* arena list: bin's non-full slabs or free spans */
    struct { struct xa_span *alias_next, *owner; };  /* MESHED: the owner's next alias, the owner */
  };
  struct xa_span *lru_next, *lru_prev;  /* arena's dirty list (oldest first) */
  uint32_t npages;              /* length of the span */
  union {
    uint32_t nfree;             /* slab: free objects */
    uint32_t unfaulted;         /* dirty free span: how many of its pages
                                   were purged (a slab's, before it emptied)
                                   and are not resident: fresh when taken */
  };
  uint16_t first;               /* page index in the chunk */
  uint8_t state;                /* XA_SPAN_* */
  uint8_t cls;                  /* slab class */
  uint8_t dirty;                /* free span: XA_PAGES_*; slab: 1 if it has
                                   free pages not yet purged */
  uint8_t purging;              /* slab: madvise of its free pages running */
  uint8_t purged;               /* slab: pages purged while it stayed a slab,
                                   not yet counted as fresh (xa_os_fresh) */
  uint8_t pad;
  uint64_t dirtied_at;          /* slab: when it became dirty; muzzy
                                   span: when it became muzzy (ns) */
  struct xa_span *aliases;      /* slab: the MESHED slabs on its pages */
  uint64_t bitmap[];            /* slab: 1 = object free */
};
_Static_assert(sizeof(struct xa_span) == 64, "span header is 64 bytes");

/* The chunk's first 4 KiB: a guard page in the huge layout, never
 * written otherwise (there, a page of address space the span area lacks:
 * 1002 usable pages a chunk instead of 1003, with 4 KiB pages). */
#define XA_CHUNK_LEAD 4096

/* Whether a chunk's second half asks for a huge page (xa_chunk_purged):
 * NO never (in the huge layout its span area asks against them; outside
 * it no advice is set), ASKED, WITHDRAWN since a purge took part of it. */
enum { XA_CHUNK_THP_NO = 0, XA_CHUNK_THP_ASKED = 1, XA_CHUNK_THP_WITHDRAWN = 2 };

struct xa_chunk {
  char lead[XA_CHUNK_LEAD];
  struct xa_pageinfo units[XA_CHUNK_UNITS];  /* page info where the page map
                                                does not reach (else untouched) */
  struct xa_pageinfo *info;     /* this chunk's page info: its part of the
                                   page map, or units */
  struct xa_arena *arena;       /* owner */
  struct xa_chunk *next;        /* arena's chunk list */
  uint32_t free_pages;          /* pages in free spans */
  uint32_t meshable;            /* backed by the mesh file (mesh.h) */
  uint32_t mesh_gen;            /* the file's generation it maps (xa_mesh_gen) */
  uint32_t adopt_wait;          /* private: not adopted before this meshing
                                   clock (arena.c) */
  void (*give)(void *p, size_t size, unsigned tag, bool clean);
                                /* NULL: its own mapping; else taken from a
                                   chunk source, whose give this is */
  unsigned tag;                 /* the source's tag for the give */
  bool born_dirty;              /* the source's pages were not all clean:
                                   its first free span is dirty */
  bool retire_purge;            /* its pages are purged before the source
                                   gets them back (it decayed, or idled as
                                   a spare, or its free spans were purged) */
  uint8_t thp;                  /* XA_CHUNK_THP_* (atomic) */
  /* span slots follow at xa_chunk_spans_off */
};

/* Geometry that depends on the run-time page size (set by xa_chunk_init).
 * Pages [0, first_page) are the header and one guard page after it (in
 * the huge layout the first of them is a guard too); pages [first_page,
 * end_page) are for spans; outside the huge layout the last page is a
 * guard, so a write running off either end of the span area faults
 * instead of corrupting this chunk's or the next chunk's metadata (in it,
 * the next chunk's first page does that). */
XA_HIDDEN extern unsigned xa_chunk_npages;      /* all pages of a chunk */
XA_HIDDEN extern unsigned xa_chunk_first_page;
XA_HIDDEN extern unsigned xa_chunk_end_page;
XA_HIDDEN extern unsigned xa_span_stride_shift;
XA_HIDDEN extern size_t xa_chunk_spans_off;
XA_HIDDEN extern bool xa_chunk_huge_layout;   /* page 0 is a guard, end_page = npages (above) */
XA_HIDDEN void xa_chunk_init(void);

/* The chunk map: one byte per chunk-sized range (a byte, not a bit: the
 * test is one load and compare, 3 instructions fewer in free). */
#define XA_CHUNKMAP_SIZE ((size_t)1 << (XA_VA_BITS - XA_CHUNK_SHIFT))
XA_HIDDEN extern uint8_t xa_chunkmap[XA_CHUNKMAP_SIZE];

XA_INLINE bool xa_chunkmap_test(uintptr_t a) {
  /* A pointer above the mapped range is never ours (chunks there are
   * refused).  It must be rejected, not masked into range: free() would
   * then read page info outside our chunks and index a bin with it.
   * A plain read, which the compiler folds into a compare with memory (an
   * atomic load is not folded: one instruction more in free): a valid
   * pointer's byte was set before the block was handed out, and that
   * happened before this free; for a stray pointer the one-byte read
   * races with a chunk being mapped or unmapped just as an atomic load
   * would. */
  uintptr_t i = a >> XA_CHUNK_SHIFT;
  return likely(i < XA_CHUNKMAP_SIZE) && xa_chunkmap[i] != 0;
}
XA_HIDDEN void xa_chunkmap_set(void *chunk, bool on);

/* The page map (above): xa_pagemap_units entries from address 0; none if
 * no map could be reserved. */
XA_HIDDEN extern struct xa_pageinfo *xa_pagemap;
XA_HIDDEN extern size_t xa_pagemap_units;
/* Bytes of the page map that chunks have written (and so made resident):
 * metadata in the statistics. */
XA_HIDDEN size_t xa_pagemap_written(void);

XA_INLINE struct xa_chunk *xa_chunk_of(const void *p) {
  return (struct xa_chunk *)((uintptr_t)p & ~(uintptr_t)XA_CHUNK_MASK);
}
XA_INLINE struct xa_pageinfo *xa_chunk_info(struct xa_chunk *c, const void *p) {
  return &c->info[((uintptr_t)p & XA_CHUNK_MASK) >> XA_UNIT_SHIFT];
}
XA_INLINE struct xa_pageinfo *xa_chunk_page_info(struct xa_chunk *c, unsigned page) {
  return &c->info[(size_t)page << (xa_os_page_shift - XA_UNIT_SHIFT)];
}
XA_INLINE struct xa_span *xa_chunk_span(struct xa_chunk *c, unsigned page) {
  return (struct xa_span *)((char *)c + xa_chunk_spans_off + ((size_t)page << xa_span_stride_shift));
}
XA_INLINE struct xa_chunk *xa_span_chunk(const struct xa_span *s) { return xa_chunk_of(s); }
XA_INLINE char *xa_span_addr(const struct xa_span *s) {
  return (char *)xa_span_chunk(s) + ((size_t)s->first << xa_os_page_shift);
}
XA_INLINE size_t xa_span_bytes(const struct xa_span *s) { return (size_t)s->npages << xa_os_page_shift; }

/* Where chunks come from.  Without a source each chunk is a mapping of
 * its own; with one (set at initialisation: init.c hands in the huge
 * blocks' regions, huge.h; a chunk made before keeps its mapping) a chunk is
 * taken from it, XA_CHUNK_SIZE bytes aligned to their size, and given back
 * when it goes, so that pages freed by one kind of block serve the other
 * without a purge and a page fault.  take: NULL if the source has none
 * (the chunk is then mapped), *clean whether every page reads as zero,
 * *tag for the give.  give: clean if every page reads as zero. */
struct xa_chunk_source {
  void *(*take)(size_t size, bool *clean, unsigned *tag);
  void (*give)(void *p, size_t size, unsigned tag, bool clean);
  const size_t *holds;    /* 0 while the source has nothing to take from:
                             then take is not called, and a program that
                             never fills it runs none of its code */
};
XA_HIDDEN struct xa_chunk_source xa_chunk_set_source(const struct xa_chunk_source *src);   /* returns the last */
/* Set on the purger's thread: a chunk deleted there held pages that no
 * one used for a while (decayed, or a quiet thread's cache emptied), so a
 * source gets them back purged, as it would a chunk that decayed. */
XA_HIDDEN extern __thread bool xa_chunk_quiet_thread;
/* A fresh chunk for arena a (outside any lock); NULL on failure.  huge:
 * in the huge layout, its second half asks for transparent huge pages
 * (with thp:auto or thp:always); else it asks against them. */
XA_HIDDEN struct xa_chunk *xa_chunk_new(struct xa_arena *a, bool huge);
/* Pages [p, p+len) of chunk c's span area were just given back (or made
 * lazy), with the span still out of everyone's reach.  A purge of part of
 * a backed huge page splits its mapping, but the kernel frees the purged
 * pages only once it splits the page itself, which it puts off until it
 * runs short of memory; and khugepaged would later make the range a whole
 * huge page again, the purged pages included, while any page of it is
 * resident.  So a half that asks for a huge page stops asking for good
 * when a purge takes part of it (one that takes it all frees the huge
 * page whole), and its huge page is split at once.  True then: the caller
 * counts the half's clean free spans that hold resident pages (never used,
 * left mapped by the split) as dirty, their other pages unfaulted. */
XA_HIDDEN bool xa_chunk_purged(struct xa_chunk *c, const char *p, size_t len);
/* Unregister it and give its memory back: unmapped, or to the source it
 * came from (outside any lock).  Its pages go back dirty, as they are, unless
 * c->retire_purge or xa_chunk_quiet_thread asks for them purged first. */
XA_HIDDEN void xa_chunk_delete(struct xa_chunk *c);
/* Set the pageinfo of every unit of pages [page, page+n) to span `first`. */
XA_HIDDEN void xa_chunk_mark_pages(struct xa_chunk *c, unsigned page, unsigned n, unsigned first, uint8_t cls);
/* Free span [first, first+n) is being purged: only its first slot is a
 * descriptor, the others are never read, so return the header pages that
 * hold nothing but them (with 4 KiB pages a purged chunk keeps at most 4 of its 19 header
 * pages resident instead of all).  Caller owns the span (PURGING). */
XA_HIDDEN void xa_chunk_purge_slots(struct xa_chunk *c, unsigned first, unsigned n);
/* Whether a span [first, first+n) covers a whole header page of slots
 * (xa_chunk_purge_slots would give one back). */
XA_HIDDEN bool xa_chunk_slots_purgeable(struct xa_chunk *c, unsigned first, unsigned n);
/* The span area of chunk c (pages [first_page, end_page)) and its size. */
XA_INLINE char *xa_chunk_span_area(struct xa_chunk *c) { return (char *)c + ((size_t)xa_chunk_first_page << xa_os_page_shift); }
XA_INLINE size_t xa_chunk_span_bytes(void) { return (size_t)(xa_chunk_end_page - xa_chunk_first_page) << xa_os_page_shift; }
/* Make the chunk's two guard pages inaccessible (again). */
XA_HIDDEN void xa_chunk_guard(struct xa_chunk *c);
/* Set pageinfo of every page of span s (after its state changed). */
XA_HIDDEN void xa_chunk_mark_span(struct xa_chunk *c, struct xa_span *s);
#endif
