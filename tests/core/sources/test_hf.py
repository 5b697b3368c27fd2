"""hf:// models: the real huggingface_hub client against a stand-in Hub on loopback."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources import resolve_model
from core.sources.hf import hub_env, parse_hf_spec, pull_hf_model
from tests.conftest import SMOL_FILE, SMOL_REPO
from tests.support.hub_standin import HubFile, StandInHub

SETTINGS = ModelSourceSettings()
TINY_REPO, TINY_FILE = "nimbus-test/tiny-GGUF", "tiny-Q8_0.gguf"


def fake_gguf(tag: bytes, size: int = 4096) -> bytes:
    """Bytes that pass the checks a download gets (GGUF magic, sha256), not a loadable model."""
    body = (tag * (size // max(1, len(tag)) + 1))[: size - 4]
    return b"GGUF" + body


@pytest.fixture()
def tiny(hub: StandInHub) -> HubFile:
    """A 12 MB GGUF-looking file (more than one of huggingface_hub's 10 MB chunks) for the
    download mechanics; the real models are served in test_hf_serving.py."""
    file = HubFile.of(fake_gguf(b"tiny", 12_000_000))
    hub.add_repo(TINY_REPO, {TINY_FILE: file})
    return file


def cache_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- specs --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "repo", "filename", "quant", "revision"),
    [
        ("hf://o/r", "o/r", None, None, "main"),
        ("hf://o/r:Q4_K_M", "o/r", None, "Q4_K_M", "main"),
        ("hf://o/r:q8_0@v1.2", "o/r", None, "q8_0", "v1.2"),
        ("hf://o/r@dev:IQ4_XS", "o/r", None, "IQ4_XS", "dev"),
        ("hf://o/r/sub/m-Q4_0.gguf", "o/r", "sub/m-Q4_0.gguf", None, "main"),
        ("hf://o/r/m.gguf@" + "a" * 40, "o/r", "m.gguf", None, "a" * 40),
    ],
)
def test_specs_parse(spec: str, repo: str, filename: str | None, quant: str, revision: str) -> None:
    parsed = parse_hf_spec(spec)
    assert (parsed.repo_id, parsed.filename, parsed.quant, parsed.revision) == (
        repo,
        filename,
        quant,
        revision,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hf://onlyowner", "not a valid hf:// model"),
        ("hf://o/r/m.bin", "is not a .gguf file"),
        ("hf://o/r@", "not a valid hf:// model"),
        ("hf://o/r:Q4 K", "not a quantization tag"),
        ("hf://o/r@main:Q4_0/x", "not a quantization tag"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message) as info:
        parse_hf_spec(spec)
    assert spec in info.value.message and "\n" not in info.value.message


def test_hub_environment_is_read_at_call_time() -> None:
    env = hub_env({"HF_HOME": "/x/hf", "HF_ENDPOINT": "http://h:1/", "HF_HUB_OFFLINE": "1"})
    assert (env.cache_dir, env.endpoint, env.offline) == (Path("/x/hf/hub"), "http://h:1", True)
    assert hub_env({"HF_HUB_CACHE": "/c", "HF_HOME": "/x"}).cache_dir == Path("/c")


# -- downloads ----------------------------------------------------------------------------------
def test_pull_by_quant_verifies_caches_and_reuses(hub: StandInHub, smol_hub_file: HubFile) -> None:
    pulled = pull_hf_model(f"hf://{SMOL_REPO}:q4_1", SETTINGS)
    storage = hub_env().cache_dir / "models--nimbus-test--SmolLM2-135M-Instruct-GGUF"
    commit = hub.repos[SMOL_REPO].refs["main"]
    assert pulled.path == storage / "snapshots" / commit / SMOL_FILE  # the Hub cache layout
    assert pulled.revision == commit
    assert pulled.files[0].sha256 == smol_hub_file.sha256
    assert pulled.path.resolve() == storage / "blobs" / smol_hub_file.sha256
    assert (storage / "refs" / "main").read_text() == commit
    assert hub.gets == [f"{SMOL_REPO}/{SMOL_FILE}"]

    # Served from the cache: the Hub is asked which commit "main" is, the file is not fetched.
    assert resolve_model(f"hf://{SMOL_REPO}/{SMOL_FILE}", SETTINGS) == pulled.path
    assert hub.gets == [f"{SMOL_REPO}/{SMOL_FILE}"]


def test_offline_start_uses_the_cache_without_any_request(
    hub: StandInHub, tiny: HubFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled = pull_hf_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen = len(hub.requests)
    assert resolve_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS) == pulled.path
    assert resolve_model(f"hf://{TINY_REPO}", SETTINGS) == pulled.path
    assert len(hub.requests) == seen
    with pytest.raises(ModelLoadError, match=r"not in the Hub cache .* HF_HUB_OFFLINE is set"):
        resolve_model("hf://nimbus-test/other:Q8_0", SETTINGS)


def test_unreachable_hub_falls_back_to_the_cache(
    hub: StandInHub, tiny: HubFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    pulled = pull_hf_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert resolve_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS) == pulled.path
    with pytest.raises(ModelLoadError, match=r"127\.0\.0\.1:9 is unreachable"):
        resolve_model("hf://nimbus-test/never-pulled", SETTINGS)


def test_revision_pinning(hub: StandInHub) -> None:
    old, new = fake_gguf(b"old"), fake_gguf(b"new")
    v1 = hub.add_repo("o/pinned", {"m-Q8_0.gguf": HubFile.of(old)}, revision="v1")
    main = hub.add_repo("o/pinned", {"m-Q8_0.gguf": HubFile.of(new)}, revision="main")
    assert pull_hf_model("hf://o/pinned:Q8_0@v1", SETTINGS).path.read_bytes() == old
    by_commit = pull_hf_model(f"hf://o/pinned/m-Q8_0.gguf@{main}", SETTINGS)
    assert by_commit.path.read_bytes() == new and by_commit.revision == main
    latest = pull_hf_model("hf://o/pinned:Q8_0", SETTINGS)
    assert latest.path.parent.name == main and latest.path.read_bytes() == new
    assert pull_hf_model("hf://o/pinned:Q8_0@v1", SETTINGS).path.parent.name == v1


def test_split_model_downloads_every_part(hub: StandInHub) -> None:
    parts = {f"big-Q4_0-{i:05d}-of-00003.gguf": HubFile.of(fake_gguf(b"%d" % i)) for i in (1, 2, 3)}
    hub.add_repo("o/split", {**parts, "mmproj-big-f16.gguf": HubFile.of(fake_gguf(b"p"))})
    for spec in ("hf://o/split:Q4_0", "hf://o/split", "hf://o/split/big-Q4_0-00002-of-00003.gguf"):
        pulled = pull_hf_model(spec, SETTINGS)
        assert [f.path.name for f in pulled.files] == sorted(parts)
        assert pulled.path.name == "big-Q4_0-00001-of-00003.gguf"  # llama.cpp loads the rest
    assert sorted(hub.gets) == sorted(f"o/split/{n}" for n in parts)  # each part once


def test_a_split_model_with_a_missing_part_is_not_offered(hub: StandInHub) -> None:
    hub.add_repo("o/broken-split", {"m-Q4_0-00001-of-00002.gguf": HubFile.of(fake_gguf(b"1"))})
    with pytest.raises(ModelLoadError, match="holds no GGUF model"):
        pull_hf_model("hf://o/broken-split", SETTINGS)


def test_quant_choice_errors_list_what_is_there(hub: StandInHub) -> None:
    files = {n: HubFile.of(fake_gguf(n.encode())) for n in ("m-Q4_K_M.gguf", "m-Q4_K_S.gguf")}
    hub.add_repo("o/many", {**files, "m-Q8_0.gguf": HubFile.of(fake_gguf(b"8"))})
    with pytest.raises(ModelLoadError) as none:
        pull_hf_model("hf://o/many:Q5_K_M", SETTINGS)
    assert "no GGUF in o/many@main carries the quantization tag 'Q5_K_M'" in none.value.message
    assert "m-Q4_K_M.gguf, m-Q4_K_S.gguf, m-Q8_0.gguf" in none.value.message
    with pytest.raises(ModelLoadError, match=r"3 GGUF models in o/many@main match") as several:
        pull_hf_model("hf://o/many", SETTINGS)
    assert "name a quantization" in several.value.message
    # Q4_K is a prefix of both Q4_K_M and Q4_K_S: a whole tag matches neither.
    with pytest.raises(ModelLoadError, match="carries the quantization tag 'Q4_K'"):
        pull_hf_model("hf://o/many:Q4_K", SETTINGS)
    assert pull_hf_model("hf://o/many:q4_k_s", SETTINGS).path.name == "m-Q4_K_S.gguf"
    assert hub.gets == ["o/many/m-Q4_K_S.gguf"]


# -- failures: one line naming the model, nothing left behind -------------------------------------
def assert_one_line(exc: pytest.ExceptionInfo[ModelLoadError], spec: str) -> str:
    message = exc.value.message
    assert message.startswith(f"model {spec!r}: ") and "\n" not in message
    return message


def test_missing_file(hub: StandInHub) -> None:
    spec = f"hf://{SMOL_REPO}/nope-Q4_0.gguf"
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model(spec, SETTINGS)
    assert "nope-Q4_0.gguf not found in" in assert_one_line(exc, spec)
    assert f"it has: {SMOL_FILE}" in exc.value.message
    assert hub.gets == []


def test_wrong_revision(hub: StandInHub) -> None:
    spec = f"hf://{SMOL_REPO}:Q4_1@no-such-tag"
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model(spec, SETTINGS)
    assert "revision 'no-such-tag' not found" in assert_one_line(exc, spec)


def test_private_repo_needs_a_token(hub: StandInHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("o/private", {"m-Q8_0.gguf": HubFile.of(fake_gguf(b"p"))}, private=True)
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model("hf://o/private", SETTINGS)
    assert "a private repository needs HF_TOKEN" in assert_one_line(exc, "hf://o/private")
    hub.tokens.add("hf_reader_token")
    monkeypatch.setenv("HF_TOKEN", "hf_reader_token")
    assert pull_hf_model("hf://o/private", SETTINGS).path.read_bytes().startswith(b"GGUF")


def test_gated_repo_without_token(hub: StandInHub, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("o/gated", {"m-Q8_0.gguf": HubFile.of(fake_gguf(b"g"))}, gated=True)
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model("hf://o/gated", SETTINGS)
    message = assert_one_line(exc, "hf://o/gated")
    assert "gated repository and no HF_TOKEN is set" in message
    assert hub.gets == [] and not list(hub_env().cache_dir.rglob("*.gguf"))
    hub.tokens.add("hf_accepted_terms")
    monkeypatch.setenv("HF_TOKEN", "hf_accepted_terms")
    assert pull_hf_model("hf://o/gated", SETTINGS).files[0].size == 4096


def test_network_failure_part_way_leaves_nothing(hub: StandInHub, tiny: HubFile) -> None:
    spec = f"hf://{TINY_REPO}:Q8_0"
    hub.break_after(TINY_REPO, TINY_FILE, 5_000_000)
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model(spec, SETTINGS)
    message = assert_one_line(exc, spec)
    assert f"network failure while downloading {TINY_FILE}" in message
    assert "nothing was kept" in message
    storage = hub_env().cache_dir / "models--nimbus-test--tiny-GGUF"
    assert [f for f in cache_files(storage) if "blobs" in f or "snapshots" in f] == []
    hub.heal()  # the next start downloads the whole file again and verifies it
    pulled = pull_hf_model(spec, SETTINGS)
    assert hashlib.sha256(pulled.path.read_bytes()).hexdigest() == tiny.sha256


def test_wrong_bytes_fail_the_sha256_check_and_are_removed(hub: StandInHub, tiny: HubFile) -> None:
    spec = f"hf://{TINY_REPO}:Q8_0"
    hub.corrupt(TINY_REPO, TINY_FILE)
    with pytest.raises(ModelLoadError) as exc:
        pull_hf_model(spec, SETTINGS)
    message = assert_one_line(exc, spec)
    assert f"does not match the Hub's sha256 (expected {tiny.sha256}" in message
    storage = hub_env().cache_dir / "models--nimbus-test--tiny-GGUF"
    assert not any(f.startswith(("blobs/", "snapshots/")) for f in cache_files(storage))
    hub.heal()
    assert pull_hf_model(spec, SETTINGS).files[0].sha256 == tiny.sha256


def test_a_cached_file_that_was_never_verified_is_checked(hub: StandInHub, tiny: HubFile) -> None:
    """A process killed between huggingface_hub's rename and the sha256 check leaves an
    unmarked blob: the next start hashes it before use."""
    spec = f"hf://{TINY_REPO}:Q8_0"
    pulled = pull_hf_model(spec, SETTINGS)
    blob = pulled.path.resolve()
    marker = blob.with_name(blob.name + ".verified")
    assert marker.exists()
    marker.unlink()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match the Hub's sha256"):
        pull_hf_model(spec, SETTINGS)
    assert not blob.exists() and not pulled.path.exists()


# -- progress -----------------------------------------------------------------------------------
def test_progress_goes_to_the_callback(hub: StandInHub, tiny: HubFile) -> None:
    seen: list[tuple[int, int]] = []
    pull_hf_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (tiny.size, tiny.size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_progress_is_logged_without_a_terminal(
    hub: StandInHub, caplog: pytest.LogCaptureFixture, tiny: HubFile
) -> None:
    with caplog.at_level(logging.INFO, logger="nimbus.sources.hf"):
        pull_hf_model(f"hf://{TINY_REPO}:Q8_0", SETTINGS)
    lines = [r.getMessage() for r in caplog.records if r.name == "nimbus.sources.hf"]
    total = f"{tiny.size / 1e6:,.1f} MB"
    assert lines and lines[-1].endswith(f"downloaded {total} of {total} (100%)")


def test_environment_of_the_test_is_isolated(hub: StandInHub) -> None:
    assert os.environ["HF_ENDPOINT"] == hub.url
    assert "HF_TOKEN" not in os.environ
