# charmpy build. `make` builds the runtime library, the launcher and the C
# tests into build/; sanitizer variants go to build-asan/ and build-tsan/.
#   make            library, charmrun, tests (release flags)
#   make test       every test: C unit tests, multi-PE tests, sanitizer runs
#   make run        the showcase program on this host (shared memory)
#   make bench      benchmarks side by side with MPI (never part of test)

CC      ?= cc
BUILD   ?= build
SAN     ?=
OPT     ?= -O2 -g
WARN    = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -Iinclude -Isrc $(SAN) $(CFLAGS)
LDLIBS_ALL = -lm -lpthread $(LDLIBS)

RT_SRC   = $(wildcard src/runtime/*.c) $(wildcard src/machine/*.c) $(wildcard src/machine/shm/*.c)
RT_OBJ   = $(RT_SRC:%.c=$(BUILD)/obj/%.o)
RT_LIB   = $(BUILD)/lib/libcharmpy_rt.a
HDRS     = $(wildcard include/charmpy/*.h) $(wildcard src/*/*.h) $(wildcard src/machine/*/*.h)

CHARMRUN = $(BUILD)/bin/charmrun
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
PE_SRC   = $(wildcard tests/pe/*.c)
PE_BIN   = $(PE_SRC:tests/pe/%.c=$(BUILD)/tests/pe/%)
EX_SRC   = $(wildcard examples/c/*.c)
EX_BIN   = $(EX_SRC:examples/c/%.c=$(BUILD)/examples/%)

# The Python package lives in a project-local virtual environment.
VENV    ?= .venv
PY      = $(VENV)/bin/python
PY_SRC  = $(shell find python -name '*.py' -o -name '*.c' -o -name '*.h') \
          $(RT_SRC) $(HDRS) src/launcher/launcher.c setup.py setup.cfg pyproject.toml

.PHONY: all test ctest ctest-asan ctest-tsan pytest venv run bench clean format
all: $(RT_LIB) $(CHARMRUN) $(UNIT_BIN) $(PE_BIN) $(EX_BIN)

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(RT_LIB): $(RT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CHARMRUN): src/launcher/charmrun.c src/launcher/launcher.c $(RT_LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) src/launcher/charmrun.c src/launcher/launcher.c $(RT_LIB) -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/unit/%: tests/unit/%.c $(RT_LIB) $(HDRS) $(wildcard tests/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests $< $(RT_LIB) -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/pe/%: tests/pe/%.c $(RT_LIB) $(HDRS) $(wildcard tests/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests $< $(RT_LIB) -o $@ $(LDLIBS_ALL)

$(BUILD)/examples/%: examples/c/%.c $(RT_LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(RT_LIB) -o $@ $(LDLIBS_ALL)

# The C tests of one build directory: unit tests, then multi-PE programs.
ctest: all
	tests/run-c-tests.sh $(BUILD)

ctest-asan:
	$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" ctest

# ThreadSanitizer runs the unit tests (the queue and heap under threads).
ctest-tsan:
	$(MAKE) --no-print-directory BUILD=build-tsan OPT="-O1 -g" SAN="-fsanitize=thread" all
	tests/run-c-tests.sh build-tsan unit

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.deps: $(PY)
	$(PY) -m pip install -q --disable-pip-version-check wheel "setuptools>=61" greenlet numpy pytest
	touch $@

# The package: the runtime, the launcher and the extension, built by pip.
$(VENV)/.installed: $(VENV)/.deps $(PY_SRC)
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall .
	touch $@

venv: $(VENV)/.installed

pytest: venv
	$(PY) -m pytest tests/python -q -p no:cacheprovider

test:
	$(MAKE) --no-print-directory ctest
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory ctest-asan
	$(MAKE) --no-print-directory ctest-tsan

run: all venv
	$(CHARMRUN) -n $$(nproc) $(BUILD)/examples/showcase
	$(VENV)/bin/charmrun -n $$(nproc) examples/python/stencil.py

bench: all
	bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan $(VENV)
