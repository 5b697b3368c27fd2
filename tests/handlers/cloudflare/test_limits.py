"""The worker's limits are generated from core's settings and must agree with them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.errors import AuthenticationError, InvalidJSONError, PayloadTooLargeError
from core.settings import LimitSettings
from handlers.cloudflare import gen_limits
from tests.handlers.cloudflare.conftest import WORKER_DIR

DEFAULTS = LimitSettings.model_validate({})


def js_exports() -> dict[str, dict[str, object]]:
    code = (
        f'import {{ LIMITS, ERRORS }} from "{(WORKER_DIR / "limits.js").as_uri()}";'
        "console.log(JSON.stringify({ LIMITS, ERRORS }));"
    )
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    exports: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return exports


def test_committed_limits_are_up_to_date() -> None:
    # Fails when a default in core/settings.py changes without `python -m handlers.cloudflare.gen_limits`.
    assert gen_limits.main(["--check"]) == 0


def test_worker_limits_equal_the_python_defaults() -> None:
    exports = js_exports()
    assert exports["LIMITS"] == {name: getattr(DEFAULTS, name) for name in gen_limits.EDGE_LIMITS}
    for cls in (PayloadTooLargeError, InvalidJSONError, AuthenticationError):
        assert {"status": cls.status, "type": cls.error_type, "code": cls.code} in exports[
            "ERRORS"
        ].values()


def test_a_changed_setting_makes_the_check_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "limits.js"
    assert gen_limits.main(["--output", str(target)]) == 0
    assert gen_limits.main(["--check", "--output", str(target)]) == 0
    monkeypatch.setenv("NIMBUS_LIMITS__MAX_PROMPT_CHARS", "999")
    assert gen_limits.main(["--check", "--from-env", "--output", str(target)]) == 1
    assert gen_limits.main(["--from-env", "--output", str(target)]) == 0
    assert '"max_prompt_chars": 999' in target.read_text()
