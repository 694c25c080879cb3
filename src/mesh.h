/* Meshing's memory: chunks backed by one sparse memfd, so that two virtual
 * slabs can share one physical copy, and what fork must then do.
 *
 * With mesh:true (and a kernel that allows userfaultfd's write protection)
 * every chunk is a shared mapping of one memfd at the file offset equal to
 * its address, so a page's backing is always findable from its address.
 * Meshing slab A onto slab B (same class, live objects at disjoint
 * offsets; arena.c chooses them) is: write-protect A, copy A's live
 * objects into B at the same offsets, map B's file pages at A's address,
 * wake the writers that waited, punch A's old pages out of the file.
 * Both virtual slabs then read and write one physical copy; the arena keeps
 * a bitmap per virtual slab, so frees and their checks stay per address.
 *
 * Fork: shared mappings stay shared in a child, so the child must get a
 * copy of the file.  In xalloc's prepare handler the parent write-protects
 * every chunk's span pages (its writers wait), copies the file's data
 * into a new memfd and lifts the protection; the child maps its chunks
 * (and aliases) from that copy first thing in its handler.  The child's
 * heap is the parent's at the copy: writes made between xalloc's prepare
 * handler and the fork (by prepare handlers that run after it, or by other
 * threads) are not in it, and what runs in the child before xalloc's
 * child handler (the C library's reset of stdio locks, child handlers
 * registered before xalloc's) writes the parent's pages.  Chunk headers
 * are private memory, which fork copies exactly. */
#ifndef XA_MESH_H
#define XA_MESH_H
#include "internal.h"

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
  uint64_t fork_copies;   /* forks whose child copied the file */
  uint64_t reopens;       /* descriptors found closed by the program and opened again */
};
XA_HIDDEN extern struct xa_mesh_stats xa_mesh_stats;   /* updated atomically */
/* Meshing is on and can go on: false once the program closed the file's
 * descriptor and it could not be reopened (mesh.c). */
XA_HIDDEN bool xa_mesh_running(void);

/* At initialisation, with mesh:true: open the file and the protection. */
XA_HIDDEN void xa_mesh_init(void);
/* A fresh chunk [c, c+size) becomes file-backed (false: it stays private
 * and is never meshed).  Before a chunk is unmapped: its pages leave the
 * file. */
XA_HIDDEN bool xa_mesh_back(void *c, size_t size);
XA_HIDDEN void xa_mesh_forget(void *c, size_t size);
/* Purge pages of a chunk, file-backed (shared) or not. */
XA_HIDDEN void xa_mesh_purge(bool shared, void *p, size_t size);
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
/* Give an alias [p, p+bytes) its own (empty, zero) pages back. */
XA_HIDDEN bool xa_mesh_restore(void *p, size_t bytes);
/* A mesh step (move or restore and the metadata change that follows it)
 * runs under this lock, which only the purger and fork take: fork never
 * sees half a mesh.  It is held across the step's system calls; no
 * malloc or free path ever waits for it. */
XA_HIDDEN void xa_mesh_step_lock(void);
XA_HIDDEN void xa_mesh_step_unlock(void);

/* Fork, called from the arena's handlers with every arena locked.
 * Parent before fork: prefork (the step lock), protect each chunk's span
 * pages, copy the file for the child, unprotect each.  Parent after:
 * postfork_parent.  Child: begin, map each chunk's span pages from its
 * copy (map_own), then each alias at its owner's pages, done.  Where the
 * program closed the file and it could not be reopened, the copy is made
 * from the memory of the spans in use (slabs that are no alias, large
 * blocks), on each of which fork_copy's argument calls its function. */
XA_HIDDEN void xa_mesh_prefork(void);
XA_HIDDEN void xa_mesh_fork_protect(void *p, size_t size);
XA_HIDDEN void xa_mesh_fork_copy(void (*each_span_in_use)(void (*fn)(void *p, size_t size)));
XA_HIDDEN void xa_mesh_fork_unprotect(void *p, size_t size);
XA_HIDDEN void xa_mesh_postfork_parent(void);
XA_HIDDEN bool xa_mesh_child_begin(void);
XA_HIDDEN void xa_mesh_child_map_own(void *p, size_t size);
XA_HIDDEN void xa_mesh_child_map(void *p, size_t size, const void *backing);
XA_HIDDEN void xa_mesh_child_done(void);
#endif
