# The README's commands.  Each configures its own build directory with CMake.
#   make demo   build and run `vtio demo` on the default machine
#   make test   build and run the whole suite (CTest)
#   make bench  run the benchmarks, write docs/benchmarks.md
#   make asan   the suite under AddressSanitizer + UBSan
#   make tsan   the suite under ThreadSanitizer
#   make fuzz   the libFuzzer targets, FUZZ_TIME seconds each (docs/fuzzing.md)
#   make soak   the soak, SOAK_TIME seconds per run (docs/soak.md)
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CTEST_FLAGS ?= --output-on-failure -j$(JOBS)

.PHONY: all build demo test bench asan tsan clean

all: build

# Configure once per directory; re-running cmake is cheap and picks up new files.
define configure
	@$(CMAKE) -S . -B $(1) -DVTIO_WERROR=ON $(2) >/dev/null
	@$(CMAKE) --build $(1) -j$(JOBS)
endef

build:
	$(call configure,build,-DCMAKE_BUILD_TYPE=RelWithDebInfo)

demo: build
	./build/vtio demo

test: build
	cd build && ctest $(CTEST_FLAGS)

bench: deps-bench
	$(call configure,build-release,-DCMAKE_BUILD_TYPE=Release)
	./bench/run.sh build-release/bench docs

asan:
	$(call configure,build-asan,-DCMAKE_BUILD_TYPE=Debug -DVTIO_SANITIZE=address$(,)undefined)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_FLAGS)

tsan:
	$(call configure,build-tsan,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVTIO_SANITIZE=thread)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ctest $(CTEST_FLAGS)

# jq turns the benchmarks' JSON into the table in docs/benchmarks.md.
deps-bench:
	@command -v jq >/dev/null || { echo "installing jq"; \
	  (apt-get install -y jq || (apt-get update && apt-get install -y jq)) >/dev/null; }

clean:
	rm -rf build build-release build-asan build-tsan build-fuzz

, := ,

# `make soak` (docs/soak.md): vtio-soak for SOAK_TIME seconds per run, strict
# and lazy IOMMU, on the RelWithDebInfo build and then under ThreadSanitizer;
# each run prints one JSON line and fails the target on any error.  Only the
# soak program is built in each directory; the whole takes about
# 4 x SOAK_TIME plus the builds.
SOAK_TIME ?= 60
SOAK_TSAN := TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
.PHONY: soak
soak:
	@$(CMAKE) -S . -B build -DVTIO_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(CMAKE) --build build -j$(JOBS) --target vtio-soak
	@$(CMAKE) -S . -B build-tsan -DVTIO_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DVTIO_SANITIZE=thread >/dev/null
	@$(CMAKE) --build build-tsan -j$(JOBS) --target vtio-soak
	./build/vtio-soak --seconds $(SOAK_TIME) --mode strict
	./build/vtio-soak --seconds $(SOAK_TIME) --mode lazy
	$(SOAK_TSAN) ./build-tsan/vtio-soak --seconds $(SOAK_TIME) --mode strict
	$(SOAK_TSAN) ./build-tsan/vtio-soak --seconds $(SOAK_TIME) --mode lazy

# `make fuzz` (docs/fuzzing.md): the libFuzzer targets of tests/fuzz, built
# with clang in build-fuzz (coverage + ASan + UBSan), each run alone for
# FUZZ_TIME seconds from its working corpus build-fuzz/corpus/<name> (seeded
# from tests/fuzz/corpus/<name>).  A crash, leak or timeout is copied into
# tests/fuzz/regress/<name>/, where the replay tests of `make test` run it
# from then on, and the target fails.  clang and libFuzzer's runtime
# (Debian: libclang-rt-dev, for the default clang) are installed if missing.
FUZZ_TIME ?= 60
FUZZ_TARGETS ?= vtd dma_engine vfio
FUZZ_PROBE := int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }
.PHONY: fuzz deps-fuzz
fuzz: deps-fuzz
	@CC=clang $(CMAKE) -S . -B build-fuzz -DVTIO_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@$(CMAKE) --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	./tests/fuzz/run.sh build-fuzz $(FUZZ_TIME) $(FUZZ_TARGETS)

deps-fuzz:
	@echo '$(FUZZ_PROBE)' | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null || { \
	  echo "installing clang and libFuzzer (libclang-rt-dev)"; \
	  (apt-get install -y clang libclang-rt-dev || \
	   (apt-get update && apt-get install -y clang libclang-rt-dev)) >/dev/null; }
