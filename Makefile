# dsv3.c build. `make` builds ./dsv3; `make test` builds and runs every C test;
# `make sanitize` runs the same tests under ASan + UBSan.
CC      ?= gcc
BUILD   ?= build
DSV3_BIN ?= dsv3
OPT     ?= -O2 -march=native
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -fopenmp -Iinclude -Isrc
LDLIBS  += -lcjson -lonig -lm -fopenmp
SAN_FLAGS = -O1 -march=native -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC  := $(shell find src -name '*.c' | sort)
APP_SRC  := $(shell find apps -name '*.c' | sort)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(wildcard tests/util/*.c)
TEST_HELPER_OBJ := $(TEST_HELPERS:%.c=$(BUILD)/%.o)

.PHONY: all test sanitize clean fixtures setup run bench fuzz-smoke
all: $(DSV3_BIN) $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdsv3.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(DSV3_BIN): $(APP_OBJ) $(BUILD)/libdsv3.a
	$(CC) $(CFLAGS) -o $@ $(APP_OBJ) $(BUILD)/libdsv3.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libdsv3.a $(TEST_HELPER_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(TEST_HELPER_OBJ) $(BUILD)/libdsv3.a $(LDLIBS)

test: $(DSV3_BIN) $(TEST_BIN)
	@BUILD=$(BUILD) DSV3=./$(DSV3_BIN) bash tests/run.sh $(TEST_BIN)

# Sanitizer build lives in its own directory so it never mixes objects with the normal build.
sanitize:
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 DSV3_SANITIZE=1 \
	  $(MAKE) BUILD=build/san DSV3_BIN=build/san/dsv3 OPT="$(SAN_FLAGS)" \
	  LDLIBS="$(LDLIBS) -fsanitize=address,undefined" test

setup:
	bash scripts/setup.sh

# The main job on built-in defaults (see README).
run: $(DSV3_BIN)
	bash scripts/main.sh

# Benchmarks (never part of `make test`; each writes its section of docs/PERF.md or docs/FP8.md).
bench:
	bash bench/matmul_bench.sh
	bash bench/forward_bench.sh
	bash bench/tokenizer_bench.sh
	bash bench/fp8_study.sh
	bash bench/train_bench.sh
	bash bench/kernels_bench.sh

# The training-step bench binary (bench/train_bench.sh builds it into its own BUILD dir).
$(BUILD)/bench/train_bench: bench/train_bench.c $(BUILD)/libdsv3.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libdsv3.a $(LDLIBS)

# libFuzzer + ASan/UBSan harnesses of every parser, 20 s each (needs clang; never part of make test).
# Prints executions and crashes per harness; docs/RELIABILITY.md has the longer runs.
fuzz-smoke: $(DSV3_BIN)
	DSV3=./$(DSV3_BIN) bash fuzz/run.sh 20

# Regenerate the oracle fixtures (needs torch + transformers: pip install -r tools/ref/requirements.txt).
fixtures:
	python3 tools/ref/make_model_fixtures.py --out tests/fixtures/model
	python3 tools/ref/make_grad_fixtures.py --out tests/fixtures/grad
	python3 tools/ref/make_train_fixtures.py --out tests/fixtures/train

clean:
	rm -rf build dsv3

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
