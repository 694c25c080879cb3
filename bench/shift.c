/* shift: live memory that moves between big blocks and small objects.
 *
 *   shift THREADS SCALE [IDLE_MS]     (THREADS is ignored)
 *
 * 6 cycles; each allocates 48 * SCALE MiB (at least 4) of one kind and
 * frees it again, the kinds taking turns: blocks of 1 MiB (an
 * allocator's big-block path), then objects of 16-128 B (its small
 * classes), then blocks again.  The pointers of the small objects live in
 * a list threaded through the objects themselves, so nothing else counts.
 * An allocator that keeps the pages one kind freed resident beside the
 * fresh pages the other kind takes peaks at about twice the live bytes.
 * Every block and object is written whole and carries a stamp checked
 * before it is freed.
 *
 * Output (key=value): seconds, live_peak_kb (the most bytes asked for and
 * not freed), rss_peak_kb (VmHWM), rss_idle_kb (IDLE_MS, default 2000,
 * after everything is freed). */
#include "common.h"

#define CYCLES 6
#define BLOCK ((size_t)1 << 20)

struct obj { struct obj *next; uint64_t stamp; };

static size_t live, live_peak;

static void live_add(size_t n) {
  live += n;
  if (live > live_peak) live_peak = live;
}

static void blocks(size_t bytes, uint64_t cycle) {
  size_t n = bytes / BLOCK;
  char **b = xmalloc_chk(n * sizeof *b);
  live_add(n * sizeof *b);
  for (size_t i = 0; i < n; i++) {
    b[i] = xmalloc_chk(BLOCK);
    live_add(BLOCK);
    memset(b[i], (int)i, BLOCK);
    uint64_t s = mix64(cycle * 1000003 + i);
    memcpy(b[i], &s, 8);
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t s;
    memcpy(&s, b[i], 8);
    if (s != mix64(cycle * 1000003 + i)) VERIFY_FAIL("shift: block %zu of cycle %llu corrupted", i, (unsigned long long)cycle);
    free(b[i]);
    live -= BLOCK;
  }
  free(b);
  live -= n * sizeof *b;
}

/* Object k's size: 16-128 B, from k, so that its free knows it. */
static size_t obj_size(uint64_t k) { return 16 * (1 + (size_t)(mix64(k ^ 0x5bd1e995) % 8)); }

static void objects(size_t bytes, uint64_t cycle) {
  struct obj *head = NULL;
  uint64_t k = 0;
  for (size_t got = 0; got < bytes; k++) {
    size_t size = obj_size(k);
    struct obj *o = xmalloc_chk(size);
    memset(o, (int)k, size);
    o->stamp = mix64(cycle * 1000003 + k);
    o->next = head;
    head = o;
    live_add(size);
    got += size;
  }
  while (head) {
    struct obj *o = head;
    head = o->next;
    if (o->stamp != mix64(cycle * 1000003 + --k)) VERIFY_FAIL("shift: object %llu of cycle %llu corrupted",
                                                            (unsigned long long)k, (unsigned long long)cycle);
    free(o);
    live -= obj_size(k);
  }
}

int main(int argc, char **argv) {
  double scale = arg_scale(argc, argv, 1.0);
  long idle_ms = argc > 3 ? atol(argv[3]) : 2000;
  size_t bytes = scaled(48.0 * BLOCK, scale, 4 * BLOCK);
  double t0 = now_sec();
  for (uint64_t c = 0; c < CYCLES; c++) {
    if (c % 2 == 0) blocks(bytes, c);
    else objects(bytes, c);
  }
  double secs = now_sec() - t0;
  if (live) VERIFY_FAIL("shift: %zu bytes counted live after the last free", live);
  long peak = proc_status_kb("VmHWM");
  struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
  printf("seconds=%.3f\nlive_peak_kb=%zu\nrss_peak_kb=%ld\nrss_idle_kb=%ld\n", secs, live_peak >> 10, peak,
         proc_status_kb("VmRSS"));
  return 0;
}
