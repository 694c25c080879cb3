# xalloc — hand-written GNU Makefile; no configure step needed on Linux
# x86_64/aarch64.  `./configure` (from configure.ac) may write config.mk to
# set the variables below (compiler, flags, installation directories).
-include config.mk

CC       ?= gcc
CXX      ?= g++
PREFIX   ?= /usr/local
DEBUG    ?= 0
STATS    ?= 1
OPT      ?= -O2
SOVER    := 0
# The version is written once, in include/xalloc.h (XALLOC_VERSION_*).
VERSION  := $(shell sed -n 's/^\#define XALLOC_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$$/\2/p' include/xalloc.h | paste -sd.)

WARN     := -Wall -Wextra -Wno-unused-parameter
# Flags the fast path's instruction counts rely on (README, "How it works",
# Fast path): hidden visibility and no semantic interposition (direct
# calls), the initial-exec TLS model (the cache pointer is one load), no PLT.
# Frame pointers: the heap profiler walks the stack through xalloc's own
# frames (backtrace.h); the fast paths need no frame, so they keep none.
LIBFLAGS := -std=gnu11 $(OPT) -g -fPIC -fvisibility=hidden -ftls-model=initial-exec \
            -fno-plt -fno-semantic-interposition -fno-builtin-malloc -fno-builtin-free \
            -fno-stack-protector -fno-omit-frame-pointer -pthread -Iinclude -Isrc -DXA_DEBUG=$(DEBUG) -DXA_STATS=$(STATS)
CFLAGS_T := -std=gnu11 -O1 -g -pthread -Iinclude -Isrc $(WARN)

# The compiler writes each object's header dependencies next to it (.d).
DEPFLAGS := -MMD -MP

SRCS := $(wildcard src/*.c)
OBJS := $(patsubst src/%.c,build/obj/%.o,$(SRCS))

.PHONY: print-version all lib clean check check-unit check-api check-preload check-bench check-memcheck demo
all: lib
lib: lib/libxalloc.so lib/libxalloc.a

# Code layout of the shared library.  The kernel maps a library's code
# 64 KiB at a time around each page fault (fault-around): with all the
# code in the order the files come, every program would map all of it.
# src/layout.ld orders it in three parts:
#  - xalloc_warm, right after .plt in the first window of the executable
#    segment: the functions that a program of small blocks runs (the fast
#    paths and their refills, calloc, realloc, aligned blocks, C++ new and
#    delete, thread start and exit, start-up, the purger's pass), listed
#    by name.  The hot files are compiled with -ffunction-sections, one
#    section per function, so the list can pick them;
#  - the rest of the hot code (.text: large and huge blocks, fork,
#    trimming, pressure, and what the list leaves out), from the end of
#    the first window on, mapped by the programs that run it;
#  - xalloc_cold, after .fini at a 64 KiB boundary: what gcc splits out
#    of functions (.text.unlikely: error paths, functions marked XA_COLD)
#    and the whole of the files whose code runs only when an option asks
#    for it (meshing, the heap profiler, statistics and reports,
#    xalloc_ctl) or on misuse; the hot files call into those only behind
#    their option (init.c, xa_mesh_purge).
# The segments are aligned to 64 KiB (max-page-size), so the loader maps
# the library at a 64 KiB boundary and the windows fall the same way in
# every process.  A linker that does not take the script (gold, mold)
# links without it: the same code, laid out as the linker likes.
# test/layout.sh checks the layout.
OBJCOPY  ?= objcopy
OBJDUMP  ?= objdump
COLD_FILES := backtrace ctl error explain mesh mlock pprof prof report sample stats
COLD_SECTION := xalloc_cold
is_cold = $(filter $(COLD_FILES),$(basename $(notdir $(1))))
# Rename each section of object $@ whose name matches the extended
# regular expression $(1) to $(2) (objcopy takes no wildcards, and
# -ffunction-sections makes a section per function).  A failed objdump
# fails the rule, rather than leave the sections as they were.
rename_sections = secs=$$($(OBJDUMP) -hw $@) && \
	$(OBJCOPY) $$(printf '%s\n' "$$secs" | awk '$$2 ~ /^($(1))$$/ { printf " --rename-section %s=$(2)", $$2 }') $@
TEXT_RE := \.text(\..+)?
COLD_RE := \.text\.unlikely(\..+)?
# separate-code (the default on x86-64 only) keeps the headers and the
# read-only data out of the executable segment, on every architecture.
LAYOUT_LDFLAGS := $(shell $(CC) $(LDFLAGS) -shared -Wl,-T,src/layout.ld -Wl,-z,separate-code -o /dev/null \
	-x c /dev/null >/dev/null 2>&1 && echo -Wl,-T,src/layout.ld -Wl,-z,separate-code) -Wl,-z,max-page-size=0x10000
# A failed objcopy leaves no object behind that make would take as built;
# a changed Makefile (flags, the cold files) rebuilds the objects.
.DELETE_ON_ERROR:
build/obj/%.o: src/%.c Makefile | build/obj
	$(CC) $(LIBFLAGS) $(if $(call is_cold,$@),,-ffunction-sections) $(WARN) $(CPPFLAGS) $(CFLAGS) $(DEPFLAGS) -c $< -o $@
	$(call rename_sections,$(if $(call is_cold,$@),$(TEXT_RE),$(COLD_RE)),$(COLD_SECTION))

# In the archive, all of xalloc's code is one section, xalloc_text, whose
# bounds the linker provides (__start_xalloc_text, __stop_xalloc_text) in
# the program that links it: the heap profiler's stack walk leaves out the
# frames inside it (backtrace.c; the shared library finds its own code
# from its ELF header instead, and exports no such symbols).
AOBJS := $(patsubst build/obj/%.o,build/obj/a/%.o,$(OBJS))
build/obj/a/%.o: build/obj/%.o | build/obj/a
	cp $< $@
	$(call rename_sections,$(TEXT_RE)|$(COLD_SECTION),xalloc_text)

lib/libxalloc.so.$(VERSION): $(OBJS) src/layout.ld
	@mkdir -p lib
	$(CC) -shared -Wl,-soname,libxalloc.so.$(SOVER) -Wl,-z,nodelete $(LAYOUT_LDFLAGS) -pthread $(LDFLAGS) -o $@ $(OBJS)
lib/libxalloc.so.$(SOVER): lib/libxalloc.so.$(VERSION)
	ln -sf libxalloc.so.$(VERSION) $@
lib/libxalloc.so: lib/libxalloc.so.$(SOVER)
	ln -sf libxalloc.so.$(SOVER) $@
lib/libxalloc.a: $(AOBJS)
	@mkdir -p lib; rm -f $@; ar rcs $@ $(AOBJS)

print-version:
	@echo $(VERSION)

build/obj build/obj/a build/test:
	mkdir -p $@

# ---- tests -----------------------------------------------------------------
# unit_*.c   internals, linked with libxalloc.a (hidden symbols reachable)
# api_*.c    public API via -lxalloc; also built against glibc (-DXA_TEST_GLIBC)
# stress_*.c multi-threaded, bounded time, via -lxalloc
# *.sh       preload/link scripts: run with XALLOC_SO, XALLOC_A, BUILD set
# test/run.sh runs the suites one by one, prints one line per suite and a
# total, and keeps each suite's output in build/test/logs/<suite>.log.
UNIT   := $(patsubst test/%.c,build/test/%,$(wildcard test/unit_*.c))
API    := $(patsubst test/%.c,build/test/%,$(wildcard test/api_*.c))
APIG   := $(patsubst test/%.c,build/test/%.glibc,$(wildcard test/api_*.c))
STRESS := $(patsubst test/%.c,build/test/%,$(wildcard test/stress_*.c))
SCRIPTS:= $(filter-out test/run.sh,$(wildcard test/*.sh))
RPATH  := -Wl,-rpath,$(CURDIR)/lib
TESTCC  = $(CC) $(CFLAGS_T) $(CPPFLAGS) -MMD -MP -MF $@.d

build/test/unit_%: test/unit_%.c lib/libxalloc.a | build/test
	$(TESTCC) -fno-builtin -o $@ $< lib/libxalloc.a -lcmocka -lm
build/test/api_%: test/api_%.c lib/libxalloc.so | build/test
	$(TESTCC) -fno-builtin -o $@ $< -Llib $(RPATH) -lxalloc -lcmocka
build/test/api_%.glibc: test/api_%.c | build/test
	$(TESTCC) -fno-builtin -DXA_TEST_GLIBC -o $@ $< -lcmocka
build/test/stress_%: test/stress_%.c lib/libxalloc.so | build/test
	$(TESTCC) -o $@ $< -Llib $(RPATH) -lxalloc -lcmocka

TESTENV := XALLOC_SO=$(CURDIR)/lib/libxalloc.so XALLOC_A=$(CURDIR)/lib/libxalloc.a \
           BUILD=$(CURDIR)/build/test SRC=$(CURDIR) CC="$(CC)" CXX="$(CXX)"
RUNTESTS := $(TESTENV) sh test/run.sh $(CURDIR)/build/test/logs

# `make check` is the test command: every suite below, one summary.  The
# fuzzer (check-fuzz, needs clang) and the benchmark's quick mode
# (check-bench) are separate steps: CI runs them after it.
check: lib $(UNIT) $(API) $(STRESS) $(APIG)
	@$(RUNTESTS) $(UNIT) $(API) $(STRESS) $(APIG) $(SCRIPTS)
check-unit: $(UNIT)
	@$(RUNTESTS) $(UNIT)
check-api: $(API) $(APIG) $(STRESS)
	@$(RUNTESTS) $(API) $(STRESS) $(APIG)
check-preload: lib $(UNIT) build/test/api_explain
	@$(RUNTESTS) $(SCRIPTS)
# The benchmark suite's quick mode must run and report every workload for
# xalloc (times are never checked; missing peers are skipped); so must three
# of the large-block workloads (xalloc alone), and weights under xalloc
# its TLB counter's value (or that the machine has none).
check-bench: lib bench-progs
	$(BENCH_PY) bench/run.py --quick --no-build-lib --out build/bench-quick
	@grep -q '^larson,xalloc,OK,' build/bench-quick/results.csv && \
	  ! grep -E '^[^,]*,xalloc,(FAIL|CRASH|TIMEOUT),' build/bench-quick/results.csv
	$(BENCH_PY) bench/largebench.py --runs 1 --only kvpool,large,shift --skip glibc,jemalloc,tcmalloc,mimalloc \
	  --no-plots --out build/largebench-quick
	@grep -q '^| xalloc | [0-9]' build/largebench-quick/largebench.md && \
	  ! grep -q '^| xalloc | FAIL' build/largebench-quick/largebench.md
	@LD_PRELOAD=$(CURDIR)/lib/libxalloc.so build/bench/weights 2 0.02 0 > build/weights-quick.txt && \
	  grep -Eq '^dtlb_load_misses=([0-9]+|unsupported)$$' build/weights-quick.txt
	@rm -rf build/replot && mkdir -p build/replot && cp docs/bench/scaling-16cpu/scaling.csv build/replot/ && \
	  $(BENCH_PY) bench/scaling --replot build/replot >/dev/null && \
	  test "$$(grep -c '^# ' build/replot/scaling.dat)" = 40 && grep -q "index 39 using" build/replot/scaling.gp

check-memcheck: $(API)
	@set -e; for t in $(API); do echo "== memcheck $$t.glibc"; \
	  valgrind -q --error-exitcode=9 --leak-check=no $$t.glibc >/dev/null; done

# The quick-start job: a real, unmodified program (python3, then sort) runs
# under LD_PRELOAD=libxalloc.so; malloc_stats() output proves who served it.
demo: lib
	@echo "== python3 under xalloc"
	LD_PRELOAD=$(CURDIR)/lib/libxalloc.so python3 -c "import ctypes; d = {i: str(i) * 5 for i in range(2000000)}; print('python3: dict of', len(d), 'entries built'); ctypes.CDLL(None).malloc_stats()"
	@echo "== where that python3's memory is (xalloc_ctl stats.explain)"
	LD_PRELOAD=$(CURDIR)/lib/libxalloc.so python3 -c "import ctypes; d = {i: str(i) * 5 for i in range(2000000)}; ctypes.CDLL(None).xalloc_ctl(b'stats.explain', None, None, None, 0)"
	@echo "== sort of 2 million lines under xalloc"
	@mkdir -p build; seq 2000000 | awk '{ print ($$1 * 7919) % 2000003 }' > build/demo.txt
	LD_PRELOAD=$(CURDIR)/lib/libxalloc.so sort -n build/demo.txt | md5sum
	sort -n build/demo.txt | md5sum

clean:
	rm -rf build lib

-include $(OBJS:.o=.d) $(addsuffix .d,$(UNIT) $(API) $(APIG) $(STRESS))
-include bench/bench.mk
-include $(wildcard mk/*.mk)
