# Benchmark suite (included by the top-level Makefile; paths are relative to
# the repository root).  See bench/README.md.
#   make bench            full run: all workloads x allocators, 5 runs, median
#   make bench-quick      CI mode, < 60 s
#   make bench-scaling    threaded workloads at 1,2,4,8,16 threads
#   make bench-callgrind  instructions per free+malloc pair / per realloc
#   make bench-progs      just build the programs (build/bench/)
# Extra runner options: make bench BENCH_ARGS="--only larson,frag --runs 3"

BENCH_CC     ?= $(CC)
BENCH_CFLAGS ?= -O2 -g -pthread -Wall -Wextra -Wno-unused-parameter
BENCH_DIR    := build/bench
BENCH_PY     ?= python3
BENCH_ARGS   ?=
BENCH_NAMES  := larson xmalloc cache_scratch cache_thrash mstress sh6bench sh8bench \
                glibc_simple glibc_thread exprtree large frag rss_time cg_micro infer bursts \
                kvpool weights oscillate manythreads shift mlockall
BENCH_PROGS  := $(addprefix $(BENCH_DIR)/,$(BENCH_NAMES)) $(BENCH_DIR)/launch
BENCH_HDRS   := $(wildcard bench/*.h)

.PHONY: bench bench-quick bench-scaling bench-callgrind bench-progs bench-clean

bench-progs: $(BENCH_PROGS)

$(BENCH_DIR):
	mkdir -p $@

$(BENCH_DIR)/exprtree: bench/exprtree.c $(BENCH_HDRS) | $(BENCH_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $< -lm

# static, so that it stays tiny and ignores LD_PRELOAD (see launch.c)
$(BENCH_DIR)/launch: bench/launch.c | $(BENCH_DIR)
	$(BENCH_CC) -O2 -static -Wall -o $@ $< || $(BENCH_CC) -O2 -Wall -o $@ $<

$(BENCH_DIR)/%: bench/%.c $(BENCH_HDRS) | $(BENCH_DIR)
	$(BENCH_CC) $(BENCH_CFLAGS) -o $@ $<

bench: bench-progs
	$(BENCH_PY) bench/run.py $(BENCH_ARGS)

bench-quick: bench-progs
	$(BENCH_PY) bench/run.py --quick $(BENCH_ARGS)

bench-scaling: bench-progs
	$(BENCH_PY) bench/scaling $(BENCH_ARGS)

bench-callgrind: bench-progs
	$(BENCH_PY) bench/run.py callgrind $(BENCH_ARGS)

bench-clean:
	rm -rf $(BENCH_DIR) bench/results
