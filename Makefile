# Entry points. `make demo` and `make test` build in Release mode (CMake) first.
#   make demo      build, then run the main job: train a small Mega on ListOps (short preset)
#   make test      build, then run every test through ctest
#   make test-sanitize  the same under ASan + UBSan (what CI also runs)
#   make bench     build, then run the core benchmark (1 thread)
#   make gradcheck build, then run the gradient check of every op
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all configure build demo test test-sanitize bench gradcheck clean

all: build

configure:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > $(BUILD).configure.log 2>&1 \
	  || { cat $(BUILD).configure.log; exit 1; }
	@grep -E "^-- megagrad:" $(BUILD).configure.log || true

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/megagrad train --task listops --out runs/listops

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite once more under AddressSanitizer + UndefinedBehaviorSanitizer (CPU only).
# Only the targets the tests run are built (the test suite and the megagrad program).
test-sanitize:
	@$(MAKE) --no-print-directory configure BUILD=build-sanitize \
	  CMAKE_FLAGS="-DMEGAGRAD_SANITIZE=ON -DMEGAGRAD_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo"
	@cmake --build build-sanitize -j $(JOBS) --target megagrad_tests megagrad
	cd build-sanitize && ctest --output-on-failure -j $(JOBS)

bench: build
	./$(BUILD)/bench_core

gradcheck: build
	./$(BUILD)/megagrad gradcheck

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
