from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings, describe_fields


def test_env_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMBUS_MODEL", "/models/x.gguf")
    monkeypatch.setenv("NIMBUS_ENGINE__N_CTX", "4096")
    monkeypatch.setenv("NIMBUS_LIMITS__MAX_QUEUE", "3")
    s = Settings()
    assert (s.model, s.engine.n_ctx, s.limits.max_queue) == ("/models/x.gguf", 4096, 3)


def test_defaults_are_safe() -> None:
    s = Settings()
    assert s.model == "default"
    assert s.server.host == "127.0.0.1"
    assert s.limits.max_queue == 16 and s.limits.max_body_bytes == 1_048_576


@pytest.mark.parametrize(
    "bad",
    [
        {"engine": {"n_ctx": 10}},
        {"limits": {"max_queue": -1}},
        {"server": {"port": 70000}},
        {"source": {"sha256": "xyz"}},
    ],
)
def test_out_of_bounds_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_every_field_is_described() -> None:
    rows = describe_fields(Settings())
    assert {r[0] for r in rows} >= {"NIMBUS_MODEL", "NIMBUS_ENGINE__N_CTX", "NIMBUS_SERVER__PORT"}
    assert all(desc for *_, desc in rows)
