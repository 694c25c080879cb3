/* Meshing's memory: chunks backed by one sparse memfd, so that two virtual
 * slabs can share one physical copy, and what fork must then do.
 *
 * With mesh:true (and a kernel that allows userfaultfd's write protection)
 * a chunk whose slabs mesh is a shared mapping of one memfd at the file
 * offset equal to its address, so a page's backing is always findable
 * from its address.  A chunk starts as private memory, whose page faults
 * cost less (Linux 6.18, 2 CPUs: 0.40 s per GiB against 0.64 for the
 * file's), and is adopted into the file when meshing first picks one of
 * its slabs: its pages held still, copied into the file, the file mapped
 * over them.  Where the kernel cannot hold still private pages not
 * populated yet (before Linux 6.4), chunks start in the file.
 * Meshing slab A onto slab B (same class, live objects at disjoint
 * offsets; arena.c chooses them) is: write-protect A, copy A's live
 * objects into B at the same offsets, map B's file pages at A's address,
 * wake the writers that waited, punch A's old pages out of the file.
 * Both virtual slabs then read and write one physical copy; the arena keeps
 * a bitmap per virtual slab, so frees and their checks stay per address.
 *
 * Fork: shared mappings stay shared in a child, and the child must see
 * the heap exactly as it was at the fork system call: writes by other
 * threads and by the prepare handlers that run after xalloc's included,
 * none of the parent's after.  Only the kernel's copy-on-write of private
 * memory cuts at that instant, so xalloc's prepare handler maps every
 * chunk's span pages copy-on-write (MAP_PRIVATE) from the same file at
 * the same offsets: one mmap per run, which swaps the mapping under the
 * kernel's lock, so no write is lost and nobody waits.  The fork then
 * copies the heap as it copies any private memory.  After it each side
 * copies its view (the file, and the pages it wrote since) into a file of
 * its own and maps that shared again: the parent with its writers held
 * still by the userfaultfd (it holds no lock of the C library's by then),
 * the child alone; aliases' live objects are copied onto their owners'
 * pages of the new file, since either side may have written an alias and
 * its owner apart.  The old file is no one's afterwards.  While the heap
 * is copy-on-write, chunks made are private and chunks unmapped leave
 * their pages in the file.  Chunk headers are private memory, which fork
 * copies exactly. */
#ifndef XA_MESH_H
#define XA_MESH_H
#include "internal.h"
#include "os.h"

/* True once mesh:true found a memfd and write protection: chunks mapped
 * from then on are file-backed. */
XA_HIDDEN extern bool xa_mesh_on;

struct xa_mesh_stats {
  uint64_t meshes;        /* slabs meshed onto another */
  uint64_t pages;         /* physical pages freed by meshing (those resident
                             in the moved slab when it moved) */
  uint64_t bytes_copied;  /* live bytes copied */
  uint64_t ns;            /* time spent meshing (copy, remap, punch) */
  uint64_t unmeshes;      /* aliases given their own pages back */
  uint64_t failed;        /* meshes a system call refused */
  uint64_t fork_copies;   /* forks whose child copied the heap */
  uint64_t fork_takes;    /* forks whose child took the file the parent left */
  uint64_t reopens;       /* descriptors found closed by the program and opened again */
  uint64_t adopted;       /* private chunks moved into the file */
  uint64_t adopt_copied;  /* bytes of pages their adoption copied */
};
XA_HIDDEN extern struct xa_mesh_stats xa_mesh_stats;   /* updated atomically */
/* Meshing is on and can go on: false once the program closed the file's
 * descriptor and it could not be reopened (mesh.c). */
XA_HIDDEN bool xa_mesh_running(void);
/* Bytes of pages meshing's file holds now: the meshable heap's memory.
 * The process's Rss counts a page of it once per address that maps it
 * (an alias and its owner: twice) and not at all while no address does
 * (a chunk just moved into the file, before it is touched again), so
 * neither Rss nor Pss is the heap's memory while meshing runs.  0 without
 * meshing, and once the program closed the file's descriptor for good
 * (the file, unreachable then, still backs the chunks it holds). */
XA_HIDDEN uint64_t xa_mesh_file_bytes(void);

/* At initialisation, with mesh:true: open the file and the protection. */
XA_HIDDEN void xa_mesh_init(void);
/* A fresh chunk [c, c+size) becomes file-backed (false: it stays private
 * and is never meshed).  Before a chunk is unmapped: its pages leave the
 * file. */
XA_HIDDEN bool xa_mesh_back(void *c, size_t size, uint32_t *gen);
/* The file changes at each fork (each side gets one of its own): a chunk
 * made while a fork went by maps the old one, and must map the new one
 * (while it is still empty) before it is linked.  Is gen (from
 * xa_mesh_back) still the file's?  Asked with the arena lock held: a fork
 * holds them all. */
XA_HIDDEN bool xa_mesh_gen_current(uint32_t gen);
XA_HIDDEN void xa_mesh_forget(void *c, size_t size);
/* Purge pages of a chunk, file-backed (shared) or not.  Inline: without
 * mesh:true, purging runs no code of mesh.c, whose pages then stay out of
 * the process's memory (the Makefile links mesh.c apart: COLD_FILES). */
XA_HIDDEN void xa_mesh_purge_shared(void *p, size_t size);
static inline void xa_mesh_purge(bool shared, void *p, size_t size) {
  if (shared) xa_mesh_purge_shared(p, size);
  else xa_os_purge(p, size);
}
/* Move the live objects of slab `from` (bitmap `live`, 1 = live, nobjs
 * objects of objsize bytes) into slab `to` and map to's pages at from;
 * *freed: bytes of physical pages that went.  No lock held.  false:
 * nothing changed. */
XA_HIDDEN bool xa_mesh_move(char *from, char *to, size_t bytes, const uint64_t *live, unsigned nobjs,
                            size_t objsize, size_t *freed);
/* Aliases are mappings, bounded by the process's map count limit: at the
 * start of a meshing pass, how many meshes it may do; may another one? */
XA_HIDDEN void xa_mesh_pass_begin(void);
XA_HIDDEN bool xa_mesh_room(void);
/* Can private chunks be adopted (meshing runs, and the protection holds
 * pages not populated yet)?  Adopting one, the span pages [p, p+size) of
 * a private chunk, into the file: begin (false: nothing changed); then
 * for each piece [q, q+n) in turn (n: piece_bytes, or what is left),
 * hold its writers still, and with the pages it holds settled, move it:
 * its pages marked skip[i] != 0 hold nothing to keep and read as zero
 * after.  A piece refused (false from either) is private still; then undo
 * puts the pieces moved before it back to private memory (false: it could
 * not, and the file keeps them).  end says whether all went, and gives
 * the file's generation (as from xa_mesh_back).  Step lock held, no arena
 * lock; the caller keeps every purge off the chunk throughout. */
XA_HIDDEN bool xa_mesh_can_adopt(void);
XA_HIDDEN bool xa_mesh_adopt_begin(void);
XA_HIDDEN size_t xa_mesh_adopt_piece_bytes(void);
XA_HIDDEN bool xa_mesh_adopt_hold(char *q, size_t n);
XA_HIDDEN bool xa_mesh_adopt_piece(char *q, size_t n, const uint8_t *skip);
XA_HIDDEN bool xa_mesh_adopt_undo(char *p, size_t n);
XA_HIDDEN void xa_mesh_adopt_end(bool ok, uint32_t *gen);
/* Test hook: when non-zero, the piece it counts down to is refused. */
XA_HIDDEN extern unsigned xa_mesh_adopt_fail_at;
/* Test hook: false makes chunks start in the file, as where the kernel
 * cannot hold private pages (set before the chunks are made). */
XA_HIDDEN extern bool xa_mesh_adoption;
/* Give an alias [p, p+bytes) its own (empty, zero) pages back. */
XA_HIDDEN bool xa_mesh_restore(void *p, size_t bytes);
/* A mesh step (move or restore and the metadata change that follows it)
 * runs under this lock, which only the purger and fork take: fork never
 * sees half a mesh.  It is held across the step's system calls; no
 * malloc or free path ever waits for it. */
XA_HIDDEN void xa_mesh_step_lock(void);
XA_HIDDEN void xa_mesh_step_unlock(void);

/* Fork, called from the arena's handlers with every arena locked (see
 * the top of this file).  Before: prefork (the step lock, the files);
 * if fork_ready, the heap goes copy-on-write: fork_map_private on each
 * run of span pages that maps the file at consecutive offsets, then
 * fork_went.  Where the file was lost (fork_frozen) the copy-on-write
 * source is made from the memory first: fork_protect each chunk's span
 * pages, fork_make_source (on each span in use), then the runs go
 * private, each thawed as it goes (fork_thaw all if the source failed).
 * After, in the parent if fork_rebase: rebase_populate and fork_protect
 * each chunk's span pages, rebase_begin, rebase_span on each span in use (its pages that
 * may hold live objects), rebase_slots for each alias's live objects,
 * rebase_map on each run, fork_wake each chunk's span pages,
 * rebase_done; then postfork_parent.  In the child: if child_begin, the
 * same without populate, protect and wake.  The span pages' access is the arena's
 * to put back after each remap. */
XA_HIDDEN void xa_mesh_prefork(void);
XA_HIDDEN bool xa_mesh_fork_ready(void);
XA_HIDDEN bool xa_mesh_fork_frozen(void);
XA_HIDDEN bool xa_mesh_fork_protect(void *p, size_t size);
XA_HIDDEN void xa_mesh_fork_thaw(void *p, size_t size);
XA_HIDDEN void xa_mesh_fork_wake(void *p, size_t size);
XA_HIDDEN bool xa_mesh_fork_make_source(void (*each_span_in_use)(void (*fn)(void *p, size_t size)));
XA_HIDDEN bool xa_mesh_fork_map_private(void *p, size_t size, uint64_t off);
XA_HIDDEN void xa_mesh_fork_went(bool ok);
XA_HIDDEN bool xa_mesh_fork_rebase(void);
XA_HIDDEN void xa_mesh_rebase_begin(bool child);
XA_HIDDEN void xa_mesh_rebase_populate(void *p, size_t size);
XA_HIDDEN void xa_mesh_rebase_span(void *p, size_t size);
XA_HIDDEN void xa_mesh_rebase_slots(const char *alias, const char *owner, const uint64_t *live, unsigned nobjs,
                                    size_t size);
XA_HIDDEN void xa_mesh_rebase_map(void *p, size_t size, uint64_t off);
XA_HIDDEN void xa_mesh_rebase_done(bool child);
XA_HIDDEN void xa_mesh_postfork_parent(void);
XA_HIDDEN bool xa_mesh_child_begin(void);
#endif
