# libFuzzer harness for the malloc API (included by the Makefile).
#
#   make fuzz         build/fuzz/fuzz_ops
#   make check-fuzz   run it for FUZZ_SECONDS (default 30) on build/fuzz/corpus
#                     (seeded on each run, kept between runs); fails on a crash,
#                     whose input lands in build/fuzz/crash-*
#
# Needs clang and its libFuzzer runtime (Debian: clang libclang-rt-14-dev).
# The allocator's sources are compiled into the binary, so malloc is xalloc's
# and its code is instrumented for coverage (-fsanitize=fuzzer-no-link), with
# the library's flags plus XA_DEBUG=1 (arena invariants re-checked on every
# lock release).  No AddressSanitizer: it would replace malloc.  Replay a
# crash: build/fuzz/fuzz_ops build/fuzz/crash-<sha1>

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DIR     := build/fuzz
# -Wno-unknown-attributes: clang-14 lacks the copy attribute of the aliases.
FUZZ_LIBFLAGS := $(filter-out -DXA_DEBUG=%,$(LIBFLAGS)) -DXA_DEBUG=1 -fsanitize=fuzzer-no-link \
                 -fsanitize-coverage-ignorelist=test/fuzz/coverage-ignore.txt -Wno-unknown-attributes
FUZZ_OBJS    := $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(SRCS))

.PHONY: fuzz check-fuzz
fuzz: $(FUZZ_DIR)/fuzz_ops

$(FUZZ_DIR)/obj:
	mkdir -p $@
$(FUZZ_DIR)/obj/%.o: src/%.c test/fuzz/coverage-ignore.txt | $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(FUZZ_LIBFLAGS) $(WARN) $(DEPFLAGS) -c $< -o $@
-include $(FUZZ_OBJS:.o=.d)
# operator new throws through cxx_new.c's frames (as in mk/install.mk)
$(FUZZ_DIR)/obj/cxx_new.o: FUZZ_LIBFLAGS += -fexceptions

# The harness keeps edge coverage (which ops ran) but not comparison
# tracing: its pattern checks compare every byte, to no use for the fuzzer.
$(FUZZ_DIR)/fuzz_ops: test/fuzz/fuzz_ops.c test/ops.h test/testutil.h include/xalloc.h $(FUZZ_OBJS)
	$(FUZZ_CC) -std=gnu11 -O1 -g -pthread -Iinclude $(WARN) -fno-builtin -fsanitize=fuzzer \
	  -fno-sanitize-coverage=trace-cmp \
	  -o $@ test/fuzz/fuzz_ops.c $(FUZZ_OBJS) -ldl
	@# malloc must be defined in the binary, not taken from libc
	@nm $@ | grep -q ' T malloc$$' || { echo "$@: malloc is not defined in the binary"; exit 1; }

check-fuzz: $(FUZZ_DIR)/fuzz_ops
	@mkdir -p $(FUZZ_DIR)/corpus
	FUZZ_OPS_WRITE_SEEDS=$(FUZZ_DIR)/corpus $(FUZZ_DIR)/fuzz_ops
	$(FUZZ_DIR)/fuzz_ops -max_len=4096 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus
	@# again with meshing, the purger meshing every millisecond (the
	@# debug build checks every arena at each unlock, meshed slabs included)
	XALLOC_CONF=mesh:true,mesh_period_ms:1 $(FUZZ_DIR)/fuzz_ops -max_len=4096 -max_total_time=$(FUZZ_SECONDS) \
	  -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/mesh- $(FUZZ_DIR)/corpus

# test/ops.h is shared with api_differential and unit_faults
build/test/api_differential build/test/api_differential.glibc build/test/unit_faults: test/ops.h
