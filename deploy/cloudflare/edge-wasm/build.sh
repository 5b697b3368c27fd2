#!/usr/bin/env bash
# Builds llama.cpp for the edge worker as 32-bit, single-threaded WebAssembly with SIMD, no WebGPU,
# a small initial heap that grows, and the model read in place from the heap (edge.c + the
# worker's file hooks). The sources are llama.cpp as vendored in the llama-cpp-python sdist that
# nimbus serves with natively (same version, checked by sha256); the compiler is Debian's
# emscripten package (apt-get install emscripten). Output, with the inputs and flags recorded:
#   handlers/cloudflare/model/edge-wasm/{nimbus-edge.js,nimbus-edge.wasm,BUILD.json}
#
#   deploy/cloudflare/edge-wasm/build.sh [path/to/llama_cpp_python-0.3.36.tar.gz]
#
# Without an argument the sdist is fetched from PyPI with pip. About 15 minutes on 2 cores.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="$ROOT/handlers/cloudflare/model/edge-wasm"
WORK="${EDGE_WASM_WORK:-$ROOT/build/edge-wasm}"
SDIST_NAME="llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
JOBS="${JOBS:-2}"

# Debian's emcc runs its JS tools with the system node, which must find Debian's node-acorn.
export NODE_PATH="/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}"
command -v emcc >/dev/null || { echo "emcc not found: apt-get install emscripten" >&2; exit 1; }

mkdir -p "$WORK"
sdist="${1:-}"
if [[ -z "$sdist" ]]; then
  sdist="$WORK/$SDIST_NAME"
  if [[ ! -f "$sdist" ]]; then
    "${PYTHON:-python3}" -m pip download --no-binary :all: --no-deps --no-build-isolation \
      llama-cpp-python==0.3.36 -d "$WORK" || true
  fi
fi
echo "$SDIST_SHA256  $sdist" | sha256sum --check --quiet

SRC="$WORK/src"
if [[ ! -d "$SRC/vendor/llama.cpp" ]]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar xzf "$sdist" -C "$SRC" --strip-components=1
fi
LLAMA="$SRC/vendor/llama.cpp"

# GGML_SCHED_MAX_SPLIT_INPUTS: ggml's scheduler reserves room for 30 copied inputs per node of the
# graph up front (~37 MB for this model's graph, malloc'ed: real heap in wasm). With the CPU as
# the only backend nothing is ever copied between backends, and the room grows if it is needed.
CFLAGS="-O3 -msimd128 -fwasm-exceptions -DNDEBUG -DGGML_SCHED_MAX_SPLIT_INPUTS=1"
# wasm32, not the toolchain's default "x86": ggml then builds its WebAssembly SIMD kernels.
emcmake cmake -S "$LLAMA" -B "$WORK/cmake" -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DEMSCRIPTEN_SYSTEM_PROCESSOR=wasm32 \
  -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_CXX_FLAGS="$CFLAGS" \
  -DLLAMA_WASM_MEM64=OFF -DLLAMA_BUILD_HTML=OFF -DLLAMA_BUILD_COMMON=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_WEBGPU=OFF -DGGML_BACKEND_DL=OFF
cmake --build "$WORK/cmake" --target llama -j "$JOBS"

libs=$(find "$WORK/cmake" -name '*.a' | sort)
EXPORTS="_edge_log_level,_edge_load,_edge_n_ctx,_edge_heap_top,_edge_heap_live,_edge_tokenize,_edge_chat,_edge_piece,_edge_begin,_edge_feed,_edge_next,_malloc,_free"
LDFLAGS=(
  -O3 -msimd128 -fwasm-exceptions
  -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=16MB -sMAXIMUM_MEMORY=1GB -sTOTAL_STACK=2MB
  -sMEMORY_GROWTH_LINEAR_STEP=4MB
  -sMODULARIZE=1 -sEXPORT_ES6=1 -sEXPORT_NAME=createEdgeLlama -sENVIRONMENT=web
  -sFORCE_FILESYSTEM=1 -sDYNAMIC_EXECUTION=0 -sINVOKE_RUN=0 --no-entry
  "-sEXPORTED_FUNCTIONS=$EXPORTS"
  "-sEXPORTED_RUNTIME_METHODS=FS,cwrap,UTF8ToString,stringToUTF8,lengthBytesUTF8"
)
mkdir -p "$OUT"
emcc -I"$LLAMA/include" -I"$LLAMA/ggml/include" "$HERE/edge.c" $libs "${LDFLAGS[@]}" \
  -o "$WORK/nimbus-edge.mjs"
cp "$WORK/nimbus-edge.wasm" "$OUT/nimbus-edge.wasm"
# The glue looks for the .wasm next to itself (import.meta.url, which a Worker module does not
# have); the worker hands the compiled module over instead, so the name alone is kept. The glue
# is written as ".js" so that wrangler and Miniflare treat it as an ES module.
sed -e 's/new URL("nimbus-edge\.wasm",import\.meta\.url)\.toString()/"nimbus-edge.wasm"/' \
  -e 's/nimbus-edge\.mjs/nimbus-edge.js/g' "$WORK/nimbus-edge.mjs" > "$OUT/nimbus-edge.js"
if grep -q 'new URL("nimbus-edge' "$OUT/nimbus-edge.js"; then
  echo "the glue still resolves the .wasm with import.meta.url: update the substitution" >&2
  exit 1
fi

"${PYTHON:-python3}" - "$OUT" "$SDIST_SHA256" "$CFLAGS" "${LDFLAGS[*]}" <<'PY'
import hashlib, json, pathlib, subprocess, sys
out, sdist, cflags, ldflags = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
emcc = subprocess.run(["emcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
info = {
    "source": {"sdist": "llama_cpp_python-0.3.36.tar.gz", "sha256": sdist, "tree": "vendor/llama.cpp"},
    "compiler": emcc,
    "cflags": cflags,
    "ldflags": ldflags,
    "outputs": {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.glob("nimbus-edge.*"))
    },
}
(out / "BUILD.json").write_text(json.dumps(info, indent=2) + "\n")
print(json.dumps(info["outputs"], indent=2))
PY
