"""The chat page, its WebAssembly binary and the model file through the buffered Lambda handler
(real awslambdaric, function URL events): every answer fits Lambda's 6 MB response limit."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.sources.resolve import bundled_model_path
from core.ui.pages import STATIC_DIR
from tests.support import lambda_events as ev
from tests.support.lambda_runtime import LambdaProcess, lambda_function

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024
PIECE = 4 * 1024 * 1024  # what the page asks for per request


@pytest.fixture(scope="module")
def fn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaProcess]:
    with lambda_function(
        tmp_path_factory.mktemp("lambda-ui"), NIMBUS_UI__SERVE_MODEL_FILE="true"
    ) as process:
        yield process


def raw_body(response: dict[str, object]) -> bytes:
    body = str(response["body"])
    assert len(body) < LAMBDA_RESPONSE_LIMIT
    return base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()


def test_the_page_is_served_with_its_headers(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(ev.function_url("GET", "/chat"))
    assert inv.error is None, inv.error
    headers = inv.response["headers"]
    assert inv.response["statusCode"] == 200
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert b'src="ui/chat.js"' in raw_body(inv.response)


def test_the_wasm_binary_fits_a_buffered_answer(fn: LambdaProcess) -> None:
    inv = fn.api.invoke(
        ev.function_url(
            "GET", "/ui/vendor/wllama/wllama.wasm", headers={"accept-encoding": "gzip, br"}
        )
    )
    assert inv.error is None, inv.error
    assert inv.response["statusCode"] == 200
    assert inv.response["headers"]["content-encoding"] == "gzip"
    body = raw_body(inv.response)
    assert body == (STATIC_DIR / "vendor/wllama/wllama.wasm.gz").read_bytes()
    assert gzip.decompress(body)[:4] == b"\0asm"


def test_the_model_file_comes_in_range_pieces(fn: LambdaProcess) -> None:
    model = bundled_model_path()
    size = model.stat().st_size
    first, last = size - PIECE, size - 1  # the last full piece
    inv = fn.api.invoke(
        ev.function_url("GET", "/api/model/file", headers={"range": f"bytes={first}-{last}"})
    )
    assert inv.error is None, inv.error
    assert inv.response["statusCode"] == 206
    assert inv.response["headers"]["content-range"] == f"bytes {first}-{last}/{size}"
    with Path(model).open("rb") as fh:
        fh.seek(first)
        assert raw_body(inv.response) == fh.read(PIECE)
