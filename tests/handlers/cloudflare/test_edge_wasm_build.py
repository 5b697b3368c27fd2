"""The committed 32-bit llama.cpp build is the one its script records: same sources, same
outputs, and it exports every entry point the worker calls."""

from __future__ import annotations

import hashlib
import json
import re

from tests.handlers.cloudflare.conftest import DEPLOY_DIR, WORKER_DIR

BUILD_DIR = WORKER_DIR / "model" / "edge-wasm"
SCRIPT = DEPLOY_DIR / "edge-wasm" / "build.sh"


def test_committed_outputs_match_the_build_record() -> None:
    record = json.loads((BUILD_DIR / "BUILD.json").read_text())
    for name, digest in record["outputs"].items():
        assert hashlib.sha256((BUILD_DIR / name).read_bytes()).hexdigest() == digest, name
    script = SCRIPT.read_text()
    assert f'SDIST_SHA256="{record["source"]["sha256"]}"' in script
    assert record["compiler"].startswith("emcc") and "3.1.6" in record["compiler"]
    # The flags the docs promise: 32-bit, SIMD, one thread, a small heap that grows.
    for flag in ("-msimd128", "-sALLOW_MEMORY_GROWTH=1", "-sINITIAL_MEMORY=16MB"):
        assert flag in record["ldflags"], flag
    assert "MEMORY64" not in record["ldflags"] and "pthread" not in record["ldflags"]
    assert "-DGGML_SCHED_MAX_SPLIT_INPUTS=1" in record["cflags"]


def test_the_glue_exports_what_the_worker_calls() -> None:
    called = set(
        re.findall(
            r"Module\._(edge_\w+|malloc|free)\(", (WORKER_DIR / "model" / "edgewasm.js").read_text()
        )
    )
    record = json.loads((BUILD_DIR / "BUILD.json").read_text())
    exported = set(re.search(r"EXPORTED_FUNCTIONS=(\S+)", record["ldflags"]).group(1).split(","))
    assert called and {f"_{name}" for name in called} <= exported
    glue = (BUILD_DIR / "nimbus-edge.js").read_text()
    assert 'new URL("nimbus-edge.wasm"' not in glue  # Workers have no import.meta.url to resolve
    assert "eval(" not in glue and "new Function" not in glue  # no code from strings in workerd
