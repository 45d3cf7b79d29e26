# Entry points. `make demo` and `make test` build in Release mode (CMake) first.
#   make demo      build, then run the main job: train a small Mega on ListOps (short preset)
#   make test      build, then run every test through ctest
#   make test-sanitize  the same under ASan + UBSan (what CI also runs)
#   make test-tsan the thread-safety tests under ThreadSanitizer (what CI also runs)
#   make bench     build, then run the core benchmark (1 thread)
#   make gradcheck build, then run the gradient check of every op
#   make fuzz      build the libFuzzer targets of the file readers (clang), run each FUZZ_SECONDS
#   make fuzz-build  only build them (tests/fuzz/README.md)
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all configure build demo test test-sanitize test-tsan bench gradcheck clean fuzz fuzz-build

all: build

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 \
	  || { cat $(BUILD).configure.log; exit 1; }
	@grep -E "^-- megagrad:" $(BUILD).configure.log || true

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/megagrad train --task listops --force

# ctest through .ci/ctest_summary.sh: the same run and exit status, then a closing line
# "N passed, N failed, N skipped" (ctest's own "100% tests passed" counts skipped as passed).
test: build
	bash .ci/ctest_summary.sh run $(BUILD) --output-on-failure -j $(JOBS)

# The whole suite once more under AddressSanitizer + UndefinedBehaviorSanitizer (CPU only).
# Only the targets the tests run are built (the test suite, the megagrad program, the examples).
test-sanitize:
	@$(MAKE) --no-print-directory configure BUILD=build-sanitize \
	  CMAKE_FLAGS="-DMEGAGRAD_SANITIZE=ON -DMEGAGRAD_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo"
	@cmake --build build-sanitize -j $(JOBS) --target megagrad_tests megagrad train_mega autodiff_tour custom_layer
	bash .ci/ctest_summary.sh run build-sanitize --output-on-failure -j $(JOBS)

# Two models trained in two threads at once, and the other "[threads]" tests, under
# ThreadSanitizer: any data race fails the run (halt_on_error).
test-tsan:
	@$(MAKE) --no-print-directory configure BUILD=build-tsan \
	  CMAKE_FLAGS="-DMEGAGRAD_TSAN=ON -DMEGAGRAD_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo"
	@cmake --build build-tsan -j $(JOBS) --target megagrad_thread_tests
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build-tsan/megagrad_thread_tests "[threads]"

bench: build
	./$(BUILD)/bench_core

gradcheck: build
	./$(BUILD)/megagrad gradcheck

# libFuzzer targets of the file readers (tests/fuzz/), built with clang + ASan + UBSan in
# build-fuzz/. Each runs FUZZ_SECONDS on build-fuzz/corpus-work/<target>, a working copy of the
# seeds in tests/fuzz/corpus/<target> (new inputs go there, never into the repository). A crash,
# sanitizer report, leak, timeout (> 10 s per input) or out-of-memory (> 2 GB) fails the target;
# its input is saved as build-fuzz/artifacts/<target>-crash-... (rerun: ./build-fuzz/<target> FILE).
FUZZ_SECONDS ?= 30
FUZZ_BUILD ?= build-fuzz
FUZZ_TARGETS := fuzz_safetensors fuzz_json_config fuzz_data_readers

fuzz-build:
	@CC=clang CXX=clang++ cmake -S tests/fuzz -B $(FUZZ_BUILD) > $(FUZZ_BUILD).configure.log 2>&1 \
	  || { cat $(FUZZ_BUILD).configure.log; echo "make fuzz-build: needs clang (Debian: clang libclang-rt-dev)"; exit 1; }
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)

fuzz: fuzz-build
	@failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  work=$(FUZZ_BUILD)/corpus-work/$$t; \
	  mkdir -p $$work $(FUZZ_BUILD)/artifacts && cp tests/fuzz/corpus/$$t/* $$work/ || exit 1; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: $(FUZZ_BUILD)/$$t.log)"; \
	  dict=""; if [ -s tests/fuzz/$$t.dict ]; then dict=-dict=tests/fuzz/$$t.dict; fi; \
	  if ! ./$(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	      -print_final_stats=1 $$dict -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	      $$work > $(FUZZ_BUILD)/$$t.log 2>&1; then \
	    failed="$$failed $$t"; tail -n 60 $(FUZZ_BUILD)/$$t.log; \
	  fi; \
	  grep -E "^#[0-9]+" $(FUZZ_BUILD)/$$t.log | tail -n 1; \
	  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec" $(FUZZ_BUILD)/$$t.log; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed (inputs in $(FUZZ_BUILD)/artifacts/)"; exit 1; fi; \
	echo "fuzz: no crashes"

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
