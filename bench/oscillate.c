/* oscillate: live memory that swings, each swing in a different size.
 *
 *   oscillate THREADS SCALE [CYCLES]     (THREADS is ignored)
 *
 * The pattern of a service in a container whose working set comes and
 * goes: a resident base of ~3 MiB (mixed sizes, allocated once), then
 * CYCLES cycles (default 120 * SCALE, at least 4).  Each cycle picks one
 * object size, log-uniform in 24 B .. 64 KiB and different from the last
 * cycle's, allocates and fills objects of it until the cycle holds
 * 37 MiB, then frees the previous cycle's survivors and a random 99% of
 * its own: the 1% left survive into the next cycle.  No pause anywhere.
 * Live memory so swings between ~3 and ~40 MiB, and the memory a cycle
 * freed is needed again, in another size, at once.
 *
 * Every object carries a tag checked before it is freed.  Output, one
 * "key value" per line: cycles, peak_live_bytes, peak_rss_kb (VmHWM),
 * seconds. */
#include "common.h"

#define BASE_BYTES (3u << 20)
#define CYCLE_BYTES (37u << 20)
#define MIN_SIZE 24

/* The objects are their own bookkeeping (no array beside them that would
 * count against the limit): each starts with the next object of its list,
 * then its size and key, and ends with a tag of (key, size). */
struct node { struct node *next; uint32_t size, key; };
struct list { struct node *head, *tail; };

static uint32_t next_key = 1;
static uint64_t live_bytes, peak_live;

static void push(struct list *l, struct node *o) {
  o->next = NULL;
  if (l->tail) l->tail->next = o;
  else l->head = o;
  l->tail = o;
}

static void make(struct list *l, size_t size) {
  struct node *o = xmalloc_chk(size);
  /* Filled: the pages the program uses are resident, as a working set's are. */
  memset(o, (int)(next_key & 0xff), size);
  o->size = (uint32_t)size;
  o->key = next_key++;
  uint64_t t = tag_of(o->key, size);
  memcpy((char *)o + size - 8, &t, 8);
  push(l, o);
  live_bytes += size;
  if (live_bytes > peak_live) peak_live = live_bytes;
}

static void drop(struct node *o) {
  uint64_t t;
  memcpy(&t, (char *)o + o->size - 8, 8);
  if (t != tag_of(o->key, o->size)) VERIFY_FAIL("oscillate: block %p key %u corrupted", (void *)o, o->key);
  live_bytes -= o->size;
  free(o);
}

static void drop_all(struct list *l) {
  for (struct node *o = l->head, *n; o; o = n) {
    n = o->next;
    drop(o);
  }
  l->head = l->tail = NULL;
}

int main(int argc, char **argv) {
  double scale = arg_scale(argc, argv, 1.0);
  size_t cycles = argc > 3 ? strtoul(argv[3], NULL, 10) : scaled(120, scale, 4);
  rng_t r;
  rng_seed(&r, 42);
  double t0 = now_sec();

  struct list base = {0}, cur = {0}, kept = {0};
  for (size_t bytes = 0; bytes < BASE_BYTES;) {
    size_t s = rng_logsize(&r, MIN_SIZE, 4096);
    make(&base, s);
    bytes += s;
  }
  size_t last_size = 0;
  for (size_t c = 0; c < cycles; c++) {
    size_t size;
    do size = rng_logsize(&r, MIN_SIZE, 64 << 10);
    while (size == last_size);
    last_size = size;
    for (size_t i = 0, n = CYCLE_BYTES / size; i < n; i++) make(&cur, size);
    if (bench_verbose())
      fprintf(stderr, "cycle %zu size %zu live %llu KiB rss %ld KiB\n", c, size,
              (unsigned long long)(live_bytes >> 10), rss_kb_now());
    drop_all(&kept);
    for (struct node *o = cur.head, *n; o; o = n) {
      n = o->next;
      if (rng_below(&r, 100) == 0) push(&kept, o);
      else drop(o);
    }
    cur.head = cur.tail = NULL;
  }
  drop_all(&kept);
  drop_all(&base);
  double secs = now_sec() - t0;
  printf("cycles %zu\npeak_live_bytes %llu\npeak_rss_kb %ld\nseconds %.3f\n", cycles,
         (unsigned long long)peak_live, proc_status_kb("VmHWM"), secs);
  return 0;
}
