# aviary build. `make` builds the runtime library, the Lua module and bin/aviary.
# `make test` / `make demo` install missing Debian packages first (make deps).

SHELL := /bin/bash
CC ?= gcc
BUILD ?= build
PREFIX ?= /usr/local
OPT ?= -O3 -march=native
SAN ?=
LUA_INC := $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
BLAS_INC := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIB := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

# CUDA: detected from nvcc on PATH or under /usr/local/cuda; `make CUDA=0` forces a CPU build.
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifeq ($(origin CUDA),undefined)
  CUDA := $(if $(NVCC),1,0)
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

# cairo (Debian libcairo2-dev) draws the plots: antialiased lines, text in DejaVu Sans, PNG output
CAIRO_INC := $(shell pkg-config --cflags cairo 2>/dev/null || echo -I/usr/include/cairo)
CAIRO_LIB := $(shell pkg-config --libs cairo 2>/dev/null || echo -lcairo)
WARN := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
# ONNX files: protoc-c generates the protobuf-c code for Debian's onnx.proto (libonnx-dev) under $(GEN)
GEN := $(BUILD)/gen
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ONNX_GEN := $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h
ONNX_GEN_OBJ := $(BUILD)/obj/gen/onnx.pb-c.o
CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC -fopenmp -fno-trapping-math $(OPT) -g $(WARN) $(SAN) -Iruntime/include -I$(GEN) $(BLAS_INC) $(CAIRO_INC)
LDFLAGS_COMMON := -fopenmp $(SAN)
RUNTIME_LIBS := $(BLAS_LIB) -lturbojpeg -lpng -lcjson -lprotobuf-c $(CAIRO_LIB) -lm -lpthread

RUNTIME_SRC := $(shell find runtime -name '*.c' | sort)
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/obj/%.o)
ifeq ($(CUDA),1)
  CUDA_SRC := $(shell find runtime -name '*.cu' | sort)
  CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
  CFLAGS += -DAV_WITH_CUDA=1 -I$(CUDA_HOME)/include
  RUNTIME_LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublasLt -lcublas -lcudart
  NVCCFLAGS := -O3 -std=c++17 -Xcompiler -fPIC -Iruntime/include -Iruntime/ops/cuda -DAV_WITH_CUDA=1 \
    -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
endif
# oneDNN (Debian libdnnl-dev) runs convolutions where it measures faster than im2col + OpenBLAS;
# detected from its header (make deps installs it); `make DNNL=0` builds without it
DNNL ?= $(if $(wildcard /usr/include/oneapi/dnnl/dnnl.h),1,0)
ifeq ($(DNNL),1)
  CFLAGS += -DAV_WITH_DNNL
  RUNTIME_LIBS += -ldnnl
endif
BIND_SRC := $(sort $(wildcard lua/l_*.c))
BIND_OBJ := $(BIND_SRC:%.c=$(BUILD)/obj/%.o)
HOST_OBJ := $(BUILD)/obj/lua/host.o
CTEST_SRC := $(sort $(wildcard tests/c/*.c))

LIB := $(BUILD)/libaviary.so
MOD := $(BUILD)/lua/aviary/core.so
HOST := $(if $(filter build,$(BUILD)),bin/aviary,$(BUILD)/bin/aviary)
CTEST := $(BUILD)/tests/ctest

.PHONY: all deps test-deps node-tools test asan bench env install clean demo train notebooks check-cuda FORCE
all: $(LIB) $(MOD) $(HOST)

# objects rebuild when the compiler flags change (CUDA, DNNL, sanitizers, ...)
FLAGS_FILE := $(BUILD)/.flags
$(FLAGS_FILE): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CFLAGS) $(RUNTIME_LIBS)' | cmp -s - $@ 2>/dev/null || echo '$(CFLAGS) $(RUNTIME_LIBS)' > $@

# every object waits for the generated ONNX header (order-only: runtime/include/aviary/onnx.h includes it)
$(BUILD)/obj/%.o: %.c Makefile $(FLAGS_FILE) $(wildcard runtime/include/aviary/*.h runtime/*/*.h runtime/*/*/*.h lua/*.h) | $(GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(filter lua/%,$<),$(LUA_INC) -Ilua) -c $< -o $@

$(ONNX_GEN) &: $(ONNX_PROTO)
	@mkdir -p $(GEN)
	protoc-c --c_out=$(GEN) -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)

# the ONNX reader and its binding rebuild when the generated header changes
$(BUILD)/obj/runtime/onnx/onnx_io.o $(BUILD)/obj/lua/l_onnx.o $(BUILD)/obj/lua/l_onnx_read.o: $(GEN)/onnx.pb-c.h

# generated code: its own style, so only the project's warnings that it meets are relaxed
$(ONNX_GEN_OBJ): $(GEN)/onnx.pb-c.c $(GEN)/onnx.pb-c.h Makefile $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-shadow -Wno-missing-field-initializers -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(wildcard runtime/include/aviary/*.h runtime/ops/cuda/*.h runtime/ops/cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(RUNTIME_OBJ) $(ONNX_GEN_OBJ) $(CUDA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS_COMMON) -o $@ $^ $(RUNTIME_LIBS)

# the module resolves Lua symbols from the host (lua5.4 or bin/aviary)
$(MOD): $(BIND_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS_COMMON) -o $@ $(BIND_OBJ) -L$(BUILD) -laviary -Wl,-z,nodelete -Wl,-rpath,'$$ORIGIN/../..' -Wl,-rpath,'$$ORIGIN/../../..'

$(HOST): $(HOST_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_COMMON) -rdynamic -o $@ $(HOST_OBJ) -L$(BUILD) -Wl,--no-as-needed -laviary -Wl,--as-needed -llua5.4 -lreadline -lm -ldl \
	  -Wl,-rpath,'$(abspath $(BUILD))' -Wl,-rpath,'$$ORIGIN/../lib'
	@echo "built $@ (CUDA=$(CUDA))"

$(CTEST): $(CTEST_SRC) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/c -o $@ $(CTEST_SRC) -L$(BUILD) -laviary $(RUNTIME_LIBS) -Wl,-rpath,'$(abspath $(BUILD))'

# ---- packages -------------------------------------------------------------
DEPS_PKGS := lua5.4 liblua5.4-dev lua-cjson libopenblas-dev libturbojpeg0-dev libreadline-dev \
  libcjson-dev libdnnl-dev libpng-dev libcairo2-dev fonts-dejavu-core pkg-config gcc make \
  libonnx-dev libprotobuf-c-dev protobuf-c-compiler
TEST_PKGS := python3-torch python3-torchvision python3-pil python3-sklearn python3-protobuf protobuf-compiler chromium \
  python3-onnx python3-nbformat
# Node.js packages the tests drive (tools/node/package.json, versions pinned by its package-lock.json):
# playwright-core opens the HTML reports in Debian's Chromium; onnxruntime-node runs exported ONNX models
# (tools/node/ort_run.js). Node.js itself comes from Debian when absent.
NODE_TOOLS := tools/node/node_modules/playwright-core/package.json tools/node/node_modules/onnxruntime-node/package.json
define apt_ensure
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else echo "missing packages:$$missing"; echo "run: sudo apt-get install -y$$missing"; exit 1; fi; fi
endef
deps:
	$(call apt_ensure,$(DEPS_PKGS))
test-deps: node-tools
	$(call apt_ensure,$(TEST_PKGS))
# Node.js packages (ONNX Runtime for checking exports; playwright-core for the browser tests)
node-tools:
	@command -v npm >/dev/null || { test "$$(id -u)" = 0 && echo "installing: nodejs npm" && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || \
	  { echo "missing: npm; run: sudo apt-get install -y nodejs npm"; exit 1; }
	@$(foreach f,$(NODE_TOOLS),test -e $(f) &&) true || (cd tools/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

# ---- tests ------------------------------------------------------------------
test: deps test-deps
	@$(MAKE) --no-print-directory all $(CTEST)
	@BUILD=$(BUILD) HOST=$(HOST) tests/run.sh

asan:
	$(MAKE) --no-print-directory deps test-deps
	$(MAKE) --no-print-directory BUILD=build-asan OPT='-O1 -fno-omit-frame-pointer' \
	  SAN='-fsanitize=address,undefined -fno-sanitize-recover=undefined' CUDA=0 all build-asan/tests/ctest
	@ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:halt_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  BUILD=build-asan HOST=build-asan/bin/aviary AV_SANITIZED=1 tests/run.sh

bench: deps test-deps
	@$(MAKE) --no-print-directory all
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(HOST) tests/bench/bench.lua --threads=$${BENCH_THREADS:-2}
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(HOST) tests/bench/onnx_bench.lua --threads=$${BENCH_THREADS:-2}

env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/lua/?.so;;"'
	@echo 'export PATH="$(CURDIR)/bin:$$PATH"'

install: all
	install -d $(PREFIX)/lib $(PREFIX)/bin $(PREFIX)/share/lua/5.4/aviary $(PREFIX)/lib/lua/5.4/aviary
	install -m 755 $(LIB) $(PREFIX)/lib/
	install -m 755 $(MOD) $(PREFIX)/lib/lua/5.4/aviary/
	cd lua && find aviary -name '*.lua' -exec install -D -m 644 {} $(PREFIX)/share/lua/5.4/{} \;
	install -m 755 $(HOST) $(PREFIX)/bin/aviary
	@echo "installed into $(PREFIX); stock lua5.4 finds aviary when $(PREFIX) is on its search path"

# the whole workflow on a synthetic set: draw it (data/synthetic), prepare it (data/demo_images),
# train recipes/configs/demo.lua into models/demo-<time>/
demo: deps node-tools
	@$(MAKE) --no-print-directory all
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(HOST) recipes/demo.lua

# the walkthroughs notebooks/NNN_*.lua in order, in full, into notebooks/out/ (.ipynb and .html each);
# make test runs them with --quick
notebooks: deps node-tools
	@$(MAKE) --no-print-directory all
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(HOST) notebook run-all

# make train CONFIG=resnet50 ARGS='MODEL.weights=resnet50.safetensors TRAIN.num_epochs=30'
CONFIG ?= resnet50
train: deps
	@$(MAKE) --no-print-directory all
	@OPENBLAS_CORETYPE=$${OPENBLAS_CORETYPE:-Haswell} $(HOST) recipes/train.lua --config $(CONFIG) $(ARGS)

clean:
	rm -rf build build-asan bin/aviary
