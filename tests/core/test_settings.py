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


def test_security_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIMBUS_SECURITY__AUTH__MODE", "on")
    monkeypatch.setenv("NIMBUS_SECURITY__AUTH__KEYS", "k-0123456789abcdef,k-fedcba9876543210")
    monkeypatch.setenv("NIMBUS_SECURITY__RATE_LIMIT__REQUESTS_PER_WINDOW", "7")
    monkeypatch.setenv("NIMBUS_SECURITY__PROMPT__INJECTION_PATTERNS", '["secret\\\\s+plan"]')
    monkeypatch.setenv("NIMBUS_SECURITY__CORS__ALLOW_ORIGINS", '["https://a.example"]')
    s = Settings()
    assert s.security.auth.mode == "on"
    assert s.security.rate_limit.requests_per_window == 7
    assert s.security.prompt.injection_patterns == ["secret\\s+plan"]
    assert s.security.cors.allow_origins == ["https://a.example"]
    # Keys never show up in `nimbus config` output.
    shown = {env: value for env, _, value, _ in describe_fields(s)}
    assert "0123456789" not in str(shown["NIMBUS_SECURITY__AUTH__KEYS"])
    assert "0123456789" not in s.model_dump_json()


def test_security_defaults_are_safe() -> None:
    sec = Settings().security
    assert sec.auth.mode == "auto" and sec.rate_limit.enabled
    assert sec.prompt.injection_policy == "warn" and sec.prompt.on_too_long == "reject"
    assert sec.output.enabled and sec.cors.allow_origins == [] and not sec.cors.allow_credentials


@pytest.mark.parametrize(
    "bad",
    [
        {"auth": {"keys": "too-short"}},
        {"auth": {"mode": "maybe"}},
        {"rate_limit": {"window_s": 0}},
        {"rate_limit": {"backend": "dynamodb"}},  # no table
        {"prompt": {"injection_patterns": ["(unclosed"]}},
        {"output": {"extra_patterns": ["token=\\S+"]}},  # unbounded: streams could not be exact
        {"output": {"extra_patterns": ["x*"]}},  # matches empty text
        {"cors": {"allow_origins": ["*"], "allow_credentials": True}},
        {"max_json_depth": 1},
    ],
)
def test_bad_security_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(security=bad)  # type: ignore[arg-type]


def test_every_choice_setting_names_its_accepted_values() -> None:
    # `nimbus config` and the docs show these descriptions: each accepted value must be in them.
    from typing import Literal, get_args, get_origin

    from pydantic import BaseModel

    def walk(model: type[BaseModel]) -> list[tuple[str, tuple[str, ...], str]]:
        found = []
        for name, field in model.model_fields.items():
            factory = field.default_factory
            if isinstance(factory, type) and issubclass(factory, BaseModel):
                found += walk(factory)
            elif get_origin(field.annotation) is Literal:
                found.append((name, get_args(field.annotation), field.description or ""))
        return found

    choices = walk(Settings)
    assert len(choices) >= 6
    for name, values, description in choices:
        for value in values:
            assert f"'{value}'" in description, (name, value)
