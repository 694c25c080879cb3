/* pprof's profile.proto, encoded by hand (pprof.h).  The fields written:
 *
 *   Profile: 1 sample_type (ValueType), 2 sample, 3 mapping, 4 location,
 *            6 string_table, 7 drop_frames, 9 time_nanos,
 *            11 period_type (ValueType), 12 period, 13 comment,
 *            14 default_sample_type
 *   ValueType: 1 type, 2 unit (string indexes)
 *   Sample:   1 location_id (packed), 2 value (packed)
 *   Location: 1 id, 2 mapping_id, 3 address
 *   Mapping:  1 id, 2 memory_start, 3 memory_limit, 4 file_offset,
 *             5 filename, 6 build_id (string indexes)
 *
 * A message's repeated fields may come in any order, so everything is
 * streamed: samples first (their locations numbered as they appear),
 * then the locations, the mappings and, last, the string table, whose
 * indexes are fixed in advance: the constant strings, then two per
 * mapping (its path and its build ID).  Location addresses are the
 * return addresses less one, inside the call instruction, so that the
 * symboliser names the line of the call. */
#include "pprof.h"
#include "os.h"
#include <elf.h>
#include <link.h>
#include <string.h>

/* ---- output ------------------------------------------------------------ */

struct out {
  int fd;
  uint8_t *buf;
  size_t n, cap;
  bool ok;
};

static void out_flush(struct out *o) {
  if (o->n && !xa_os_write_fd(o->fd, (const char *)o->buf, o->n)) o->ok = false;
  o->n = 0;
}

static void out_bytes(struct out *o, const void *p, size_t n) {
  const uint8_t *s = p;
  while (n) {
    if (o->n == o->cap) out_flush(o);
    size_t k = o->cap - o->n < n ? o->cap - o->n : n;
    memcpy(o->buf + o->n, s, k);
    o->n += k;
    s += k;
    n -= k;
  }
}

/* A message under construction, small enough for the stack. */
struct msg {
  size_t n;
  uint8_t b[1024];
};

static void put_varint(struct msg *m, uint64_t v) {
  while (v >= 0x80) {
    m->b[m->n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  m->b[m->n++] = (uint8_t)v;
}

enum { WT_VARINT = 0, WT_LEN = 2 };

static void put_uint(struct msg *m, unsigned field, uint64_t v) {
  put_varint(m, (uint64_t)field << 3 | WT_VARINT);
  put_varint(m, v);
}

static void put_bytes(struct msg *m, unsigned field, const void *p, size_t n) {
  put_varint(m, (uint64_t)field << 3 | WT_LEN);
  put_varint(m, n);
  memcpy(m->b + m->n, p, n);
  m->n += n;
}

/* Field `field` of the profile holding message m, or bytes. */
static void out_field(struct out *o, unsigned field, const void *p, size_t n) {
  struct msg head = {0};
  put_varint(&head, (uint64_t)field << 3 | WT_LEN);
  put_varint(&head, n);
  out_bytes(o, head.b, head.n);
  out_bytes(o, p, n);
}

static void out_uint(struct out *o, unsigned field, uint64_t v) {
  struct msg m = {0};
  put_uint(&m, field, v);
  out_bytes(o, m.b, m.n);
}

/* ---- mappings ---------------------------------------------------------- */

#define MAX_MAPPINGS 4096
#define PATH_SPACE (256u << 10)
#define BUILD_ID_MAX 64      /* bytes; printed as hex */

struct mapping {
  uintptr_t start, end, offset;
  uint32_t path, path_len;   /* in the path space */
  uint32_t build, build_len;
};

struct maps {
  struct mapping *m;
  size_t n;
  char *space;               /* paths and hex build IDs */
  size_t used;
  /* the last mapping at offset 0: the ELF header of its file */
  uintptr_t elf_start, elf_end;
  uint32_t elf_path, elf_path_len, elf_build, elf_build_len;
  bool elf_checked;          /* its build ID was looked for */
};

static uint32_t keep_string(struct maps *s, const char *p, size_t n, uint32_t *len) {
  if (s->used + n > PATH_SPACE) n = 0;
  memcpy(s->space + s->used, p, n);
  *len = (uint32_t)n;
  s->used += n;
  return (uint32_t)(s->used - n);
}

/* The GNU build ID of the ELF file whose header is mapped at
 * [start, end), as hex into out (2 * BUILD_ID_MAX bytes); its length, 0
 * if none was found in that mapping. */
static size_t build_id(uintptr_t start, uintptr_t end, char *out) {
  const ElfW(Ehdr) *eh = (const void *)start;
  if (end - start < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
      eh->e_ident[EI_CLASS] != (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff > end - start ||
      (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr)) > end - start - eh->e_phoff)
    return 0;
  const ElfW(Phdr) *ph = (const void *)(start + eh->e_phoff);
  /* load bias: the mapping holds the first PT_LOAD, at file offset 0 */
  uintptr_t first = UINTPTR_MAX;
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr < first) first = ph[i].p_vaddr;
  if (first == UINTPTR_MAX) return 0;
  uintptr_t bias = start - (first & ~(uintptr_t)(xa_os_page - 1));
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_NOTE) continue;
    uintptr_t a = bias + ph[i].p_vaddr, stop = a + ph[i].p_memsz;
    if (a < start || stop > end || stop < a) continue;      /* not in this mapping */
    while (a + sizeof(ElfW(Nhdr)) <= stop) {
      const ElfW(Nhdr) *nh = (const void *)a;
      uintptr_t name = a + sizeof *nh, desc = name + ((nh->n_namesz + 3) & ~3u);
      uintptr_t next = desc + ((nh->n_descsz + 3) & ~3u);
      if (next > stop || next <= a) break;
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp((const void *)name, "GNU", 4) &&
          nh->n_descsz > 0 && nh->n_descsz <= BUILD_ID_MAX) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *d = (const void *)desc;
        for (unsigned k = 0; k < nh->n_descsz; k++) {
          out[2 * k] = hex[d[k] >> 4];
          out[2 * k + 1] = hex[d[k] & 15];
        }
        return 2 * nh->n_descsz;
      }
      a = next;
    }
  }
  return 0;
}

/* The header of a file is read only once an executable mapping of the
 * same file follows (a loaded ELF object): other files mapped at offset 0
 * (data, devices, shared memory, files truncated since) are never read. */
static bool add_mapping(const struct xa_os_mapping *m, void *arg) {
  struct maps *s = arg;
  size_t plen = strlen(m->path);
  if (m->offset == 0 && m->r && !m->shared && m->path[0] == '/') {
    s->elf_start = m->start;
    s->elf_end = m->end;
    s->elf_path = keep_string(s, m->path, plen, &s->elf_path_len);
    s->elf_build_len = 0;
    s->elf_checked = false;
  }
  if (!m->x || s->n == MAX_MAPPINGS) return true;
  struct mapping *x = &s->m[s->n++];
  x->start = m->start;
  x->end = m->end;
  x->offset = m->offset;
  bool same = s->elf_path_len == plen && !memcmp(s->space + s->elf_path, m->path, plen);
  if (same) {              /* the file whose header came before */
    if (!s->elf_checked) {
      char hex[2 * BUILD_ID_MAX];
      size_t hl = m->shared ? 0 : build_id(s->elf_start, s->elf_end, hex);
      s->elf_build = keep_string(s, hex, hl, &s->elf_build_len);
      s->elf_checked = true;
    }
    x->path = s->elf_path;
    x->path_len = s->elf_path_len;
    x->build = s->elf_build;
    x->build_len = s->elf_build_len;
  } else {
    x->path = keep_string(s, m->path, plen, &x->path_len);
    x->build_len = 0;
  }
  return true;
}

/* 1 + the index of the mapping holding addr, 0 if none (mappings sorted). */
static uint64_t mapping_of(const struct maps *s, uintptr_t addr) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (addr < s->m[mid].start) hi = mid;
    else if (addr >= s->m[mid].end) lo = mid + 1;
    else return mid + 1;
  }
  return 0;
}

/* ---- locations: one per distinct address ------------------------------- */

struct loc { uintptr_t addr; uint64_t id; };

struct locs {
  struct loc *t;
  size_t mask, n;
};

static uint64_t loc_id(struct locs *l, uintptr_t addr) {
  size_t i = (size_t)((addr * 0x9E3779B97F4A7C15ull) >> 20) & l->mask;
  while (l->t[i].id && l->t[i].addr != addr) i = (i + 1) & l->mask;
  if (!l->t[i].id) {
    l->t[i].addr = addr;
    l->t[i].id = ++l->n;
  }
  return l->t[i].id;
}

/* ---- the profile ------------------------------------------------------- */

/* The fixed part of the string table. */
enum { S_EMPTY, S_PERIOD_TYPE, S_PERIOD_UNIT, S_DROP, S_COMMENT, S_TYPES };

static size_t str_index_types(unsigned i, unsigned which) { return S_TYPES + 2 * i + which; }

static void put_value_type(struct out *o, unsigned field, uint64_t type, uint64_t unit) {
  struct msg m = {0};
  put_uint(&m, 1, type);
  put_uint(&m, 2, unit);
  out_field(o, field, m.b, m.n);
}

static void out_string(struct out *o, const char *s, size_t n) { out_field(o, 6, s, n); }

bool xa_pprof_write(int fd, const struct xa_pprof_profile *p) {
  size_t frames = 0;
  for (size_t i = 0; i < p->nsamples; i++) frames += p->samples[i].depth;
  size_t slots = 64;
  while (slots < 2 * frames) slots *= 2;
  size_t out_cap = 64u << 10;
  size_t maps_bytes = MAX_MAPPINGS * sizeof(struct mapping);
  size_t total = XA_ALIGN_UP(out_cap + maps_bytes + PATH_SPACE + slots * sizeof(struct loc), xa_os_page);
  uint8_t *mem = xa_os_map(total, xa_os_page);
  if (!mem) return false;
  struct out o = {fd, mem, 0, out_cap, true};
  struct maps s = {0};
  s.m = (struct mapping *)(mem + out_cap);
  s.space = (char *)(mem + out_cap + maps_bytes);
  struct locs l = {(struct loc *)(mem + out_cap + maps_bytes + PATH_SPACE), slots - 1, 0};
  xa_os_maps(add_mapping, &s);
  size_t nfixed = S_TYPES + 2 * p->ntypes;

  for (unsigned t = 0; t < p->ntypes; t++) put_value_type(&o, 1, str_index_types(t, 0), str_index_types(t, 1));
  for (size_t i = 0; i < p->nsamples; i++) {
    const struct xa_pprof_sample *sm = &p->samples[i];
    struct msg ids = {0}, vals = {0}, m = {0};
    for (unsigned k = 0; k < sm->depth && k < 64; k++) put_varint(&ids, loc_id(&l, sm->pcs[k] - 1));
    for (unsigned t = 0; t < p->ntypes; t++) put_varint(&vals, (uint64_t)sm->value[t]);
    put_bytes(&m, 1, ids.b, ids.n);
    put_bytes(&m, 2, vals.b, vals.n);
    out_field(&o, 2, m.b, m.n);
  }
  for (size_t i = 0; i <= l.mask; i++) {
    if (!l.t[i].id) continue;
    struct msg m = {0};
    put_uint(&m, 1, l.t[i].id);
    uint64_t map = mapping_of(&s, l.t[i].addr);
    if (map) put_uint(&m, 2, map);
    put_uint(&m, 3, l.t[i].addr);
    out_field(&o, 4, m.b, m.n);
  }
  for (size_t i = 0; i < s.n; i++) {
    struct msg m = {0};
    put_uint(&m, 1, i + 1);
    put_uint(&m, 2, s.m[i].start);
    put_uint(&m, 3, s.m[i].end);
    put_uint(&m, 4, s.m[i].offset);
    put_uint(&m, 5, nfixed + 2 * i);
    if (s.m[i].build_len) put_uint(&m, 6, nfixed + 2 * i + 1);
    out_field(&o, 3, m.b, m.n);
  }
  /* the string table, in index order */
  out_string(&o, "", 0);
  out_string(&o, p->period_type, strlen(p->period_type));
  out_string(&o, p->period_unit, strlen(p->period_unit));
  out_string(&o, p->drop_frames ? p->drop_frames : "", p->drop_frames ? strlen(p->drop_frames) : 0);
  out_string(&o, p->comment ? p->comment : "", p->comment ? strlen(p->comment) : 0);
  for (unsigned t = 0; t < p->ntypes; t++) {
    out_string(&o, p->type[t], strlen(p->type[t]));
    out_string(&o, p->unit[t], strlen(p->unit[t]));
  }
  for (size_t i = 0; i < s.n; i++) {
    out_string(&o, s.space + s.m[i].path, s.m[i].path_len);
    out_string(&o, s.space + s.m[i].build, s.m[i].build_len);
  }
  if (p->drop_frames) out_uint(&o, 7, S_DROP);
  out_uint(&o, 9, p->time_ns);
  put_value_type(&o, 11, S_PERIOD_TYPE, S_PERIOD_UNIT);
  out_uint(&o, 12, (uint64_t)p->period);
  if (p->comment) out_uint(&o, 13, S_COMMENT);
  out_uint(&o, 14, str_index_types(p->default_type, 0));
  out_flush(&o);
  xa_os_unmap(mem, total);
  return o.ok;
}
