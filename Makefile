# charmpy build. `make` builds the runtime library, the launcher and the C
# tests into build/; sanitizer variants go to build-asan/ and build-tsan/.
#   make            library, charmrun, tests (release flags)
#   make test       every test: C unit tests, multi-PE tests, sanitizer runs
#   make run        the showcase program on this host (shared memory)
#   make bench      benchmarks side by side with MPI, mpi4py, Ray, Dask,
#                   multiprocessing and charm4py (never part of test)

CC      ?= cc
BUILD   ?= build
SAN     ?=
OPT     ?= -O2 -g
# The warning set of every C file, the extension's included: setup.py reads
# this line and builds with it minus -Werror (so that another compiler's new
# warnings do not stop a user's pip install), and `make extcheck` compiles
# the extension with it whole. Keep it one line of plain flags.
WARN    = -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC -Iinclude -Isrc $(SAN) $(CFLAGS)
LDLIBS_ALL = -lm -lpthread $(LDLIBS)

RT_SRC   = $(wildcard src/runtime/*.c) $(wildcard src/machine/*.c) $(wildcard src/machine/shm/*.c)
RT_OBJ   = $(RT_SRC:%.c=$(BUILD)/obj/%.o)

# MPI, when this host has it (found by src/machine/mpi/mpi-flags.sh through
# mpicc or pkg-config, as setup.py does; `make MPI=no` builds without): the
# mpi machine layer joins the library, select.c is told it exists (by the
# script's -DCP_HAVE_MPI), and everything that links the library links MPI.
# The flags are kept in a stamp file so that MPI appearing or going away
# rebuilds what depends on it.
MPI ?= auto
ifneq ($(MPI),no)
MPI_CFLAGS := $(shell CC="$(CC)" sh src/machine/mpi/mpi-flags.sh cflags)
endif
ifneq ($(strip $(MPI_CFLAGS)),)
MPI_LIBS := $(shell sh src/machine/mpi/mpi-flags.sh libs)
RT_SRC += $(wildcard src/machine/mpi/*.c)
LDLIBS_ALL += $(MPI_LIBS)
$(BUILD)/obj/src/machine/mpi/%.o: CFLAGS_ALL += $(MPI_CFLAGS)
$(BUILD)/obj/src/machine/select.o: CFLAGS_ALL += $(MPI_CFLAGS)
else
$(info note: no MPI found (mpicc, pkg-config ompi/mpich) or MPI=no: building without the mpi machine layer)
endif
MPI_STAMP = $(BUILD)/obj/mpi-flags
$(shell mkdir -p $(BUILD)/obj && { echo '$(MPI_CFLAGS)' | cmp -s - $(MPI_STAMP) || echo '$(MPI_CFLAGS)' >$(MPI_STAMP); })
$(BUILD)/obj/src/machine/select.o: $(MPI_STAMP)
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
          $(RT_SRC) $(HDRS) src/launcher/launcher.c setup.py setup.cfg pyproject.toml \
          Makefile src/machine/mpi/mpi-flags.sh

.PHONY: mpitest mpitest-progs mpitest-mpich FORCE
.PHONY: all test ctest ctest-asan ctest-tsan pytest venv extcheck run bench clean format print-ldlibs
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

# Programs only the MPI tests run (tests/mpi/). dlhost loads libdljob.so
# (a job, the runtime and MPI) with dlopen(RTLD_LOCAL), as Python loads the
# extension, and links no MPI itself.
MPI_TEST_SRC = $(filter-out tests/mpi/dl%.c,$(wildcard tests/mpi/*.c))
MPI_TEST_BIN = $(MPI_TEST_SRC:tests/mpi/%.c=$(BUILD)/tests/mpi/%) \
               $(BUILD)/tests/mpi/dlhost $(BUILD)/tests/mpi/libdljob.so

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(RT_LIB) $(HDRS) $(wildcard tests/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests $< $(RT_LIB) -o $@ $(LDLIBS_ALL)

$(BUILD)/tests/mpi/dlhost: tests/mpi/dlhost.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< -o $@ -ldl

$(BUILD)/tests/mpi/libdljob.so: tests/mpi/dljob.c $(RT_OBJ) $(HDRS) $(wildcard tests/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests -shared $< $(RT_OBJ) -o $@ $(LDLIBS_ALL)

# The C tests of one build directory: unit tests, then multi-PE programs.
ctest: all
	tests/run-c-tests.sh $(BUILD)

# The C programs under mpirun (tests/run-mpi-tests.sh). When Open MPI is
# missing it is installed first (as root; otherwise the tests are skipped)
# and the build is redone with it.
mpitest:
	tests/run-mpi-tests.sh --install
	$(MAKE) --no-print-directory all mpitest-progs
	tests/run-mpi-tests.sh $(BUILD)

mpitest-progs: $(MPI_TEST_BIN)

# The same C tests over MPICH, installed beside Open MPI (as root; skipped
# otherwise, saying why) and built into build-mpich.
mpitest-mpich:
	tests/run-mpi-tests.sh --mpich

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
	$(PY) -m pip install -q --disable-pip-version-check wheel "setuptools>=61" greenlet cloudpickle tqdm numpy matplotlib pytest
	touch $@

# The package: the runtime, the launcher and the extension, built by pip.
# setuptools copies the package into build/py/lib.* and installs what it
# finds there: emptied first, so that a module removed from python/charmpy
# is not installed again from an old copy.
$(VENV)/.installed: $(VENV)/.deps $(PY_SRC)
	rm -rf build/py/lib.*
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall .
	touch $@

venv: $(VENV)/.installed

pytest: venv
	$(PY) -m pytest tests/python -q -p no:cacheprovider

# The extension's C files (python/ext/*.c) under the library's flags, WARN's
# -Werror included, against the headers of the interpreter $(PY) (pip builds
# the extension for it with WARN minus -Werror) and with MPI's flags when the
# library has the mpi layer, as setup.py compiles them. Compiled, not linked:
# the runtime sources the extension also contains are the library's, checked
# by its build. The interpreter's include directory is kept in a stamp so
# that a venv of another Python recompiles.
EXT_SRC   = $(wildcard python/ext/*.c)
EXT_CHECK = $(EXT_SRC:python/ext/%.c=$(BUILD)/extcheck/%.o)
PY_STAMP  = $(BUILD)/extcheck/python-include

extcheck: $(EXT_CHECK)

$(PY_STAMP): FORCE | $(PY)
	@mkdir -p $(dir $@)
	@inc=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])') && \
	  [ -n "$$inc" ] && { echo "$$inc" | cmp -s - $@ || echo "$$inc" >$@; }

$(BUILD)/extcheck/%.o: python/ext/%.c $(wildcard python/ext/*.h) $(HDRS) $(MPI_STAMP) $(PY_STAMP)
	$(CC) $(CFLAGS_ALL) -Ipython/ext -I"$$(cat $(PY_STAMP))" $(MPI_CFLAGS) -c $< -o $@

FORCE:

# MPI first (installed as root when missing), so that everything after it
# builds with the mpi machine layer; then the extension under -Werror.
test:
	tests/run-mpi-tests.sh --install
	$(MAKE) --no-print-directory extcheck
	$(MAKE) --no-print-directory ctest
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory mpitest
	$(MAKE) --no-print-directory mpitest-mpich
	$(MAKE) --no-print-directory ctest-asan
	$(MAKE) --no-print-directory ctest-tsan

run: all venv
	$(CHARMRUN) -n $$(nproc) $(BUILD)/examples/showcase
	$(VENV)/bin/charmrun -n $$(nproc) examples/python/stencil.py
	$(VENV)/bin/charmrun -n $$(nproc) examples/python/primes.py

bench: all venv
	bench/run.sh
	bench/py/run.sh
	python3 bench/suite/run.py
	bench/py/lb_run.sh
	bench/py/pool_run.sh
	bench/py/chansec_run.py
	python3 bench/py/trace_run.py
	python3 bench/py/trace_cost.py --no-fail-without-valgrind

# The flags a program linking the library needs (bench/run.sh uses them).
print-ldlibs:
	@echo $(LDLIBS_ALL)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-mpich $(VENV)
