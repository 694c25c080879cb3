/* Writing a profile in pprof's format: the protocol buffer of
 * github.com/google/pprof's profile.proto, uncompressed (pprof reads it as
 * it is), encoded here without a library and without malloc.
 *
 * A profile is a list of samples, each a call stack (return addresses,
 * the innermost first) with one value per sample type.  The writer adds
 * what pprof needs to name the code: a location per distinct address and
 * the executable mappings of the process (from /proc/self/maps, with the
 * GNU build ID of each file that has one), so that `pprof` symbolises
 * the addresses against the binaries themselves. */
#ifndef XA_PPROF_H
#define XA_PPROF_H
#include "internal.h"

#define XA_PPROF_MAX_TYPES 4

struct xa_pprof_sample {
  const uintptr_t *pcs;     /* return addresses, innermost first */
  unsigned depth;
  int64_t value[XA_PPROF_MAX_TYPES];
};

struct xa_pprof_profile {
  unsigned ntypes;                                 /* values per sample */
  const char *type[XA_PPROF_MAX_TYPES];            /* e.g. "inuse_space" */
  const char *unit[XA_PPROF_MAX_TYPES];            /* e.g. "bytes" */
  unsigned default_type;
  const char *period_type, *period_unit;           /* e.g. "space", "bytes" */
  int64_t period;
  const char *drop_frames;                         /* a regex pprof prunes with; or NULL */
  const char *comment;                             /* or NULL */
  uint64_t time_ns;                                /* wall clock of the profile */
  size_t nsamples;
  const struct xa_pprof_sample *samples;
};

/* Write p to fd; false if a write failed or memory for the encoder could
 * not be mapped (then the file is incomplete). */
XA_HIDDEN bool xa_pprof_write(int fd, const struct xa_pprof_profile *p);
#endif
