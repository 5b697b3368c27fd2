"""`nimbus pull`, `nimbus models`, `nimbus inspect`: the CLI over the stand-in Hub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.sources import bundled_model_path
from core.sources.resolve import file_sha256
from tests.conftest import GEMMA_FILE, GEMMA_REPO, SMOL_FILE, SMOL_REPO
from tests.support.hub_standin import HubFile, StandInHub

NIMBUS = str(Path(sys.executable).parent / "nimbus")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def fields(out: str) -> dict[str, str]:
    """``label  value`` lines (labels may hold one space; two or more separate)."""
    pairs = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines()]
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def test_pull_prints_path_size_and_sha256(
    hub: StandInHub, smol_hub_file: HubFile, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "pull", f"hf://{SMOL_REPO}:Q4_1")
    assert code == 0
    got = fields(out)
    commit = hub.repos[SMOL_REPO].refs["main"]
    assert got["model"] == f"hf://{SMOL_REPO}:Q4_1" and got["commit"] == commit
    assert got["path"].endswith(f"/snapshots/{commit}/{SMOL_FILE}")
    assert got["size"] == f"{smol_hub_file.size:,} bytes ({smol_hub_file.size / 1e6:,.1f} MB)"
    assert got["sha256"] == smol_hub_file.sha256
    assert Path(got["path"]).is_file()


def test_pull_of_the_bundled_model_verifies_and_hashes_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "pull", "default", "--to", str(tmp_path / "out"))
    assert code == 0
    got = fields(out)
    assert got["path"] == str(bundled_model_path())
    assert got["sha256"] == file_sha256(bundled_model_path())
    assert got["copied"] == str(tmp_path / "out" / bundled_model_path().name)


def test_pull_errors_are_one_line_and_exit_2(
    hub: StandInHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "pull", f"hf://{SMOL_REPO}:Q9_9")
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"nimbus: error: model 'hf://{SMOL_REPO}:Q9_9': no GGUF in {SMOL_REPO}@main carries "
        f"the quantization tag 'Q9_9'; it has: {SMOL_FILE}"
    ]


def test_pull_without_a_terminal_logs_its_progress(hub: StandInHub, tmp_path: Path) -> None:
    proc = subprocess.run(
        [NIMBUS, "pull", f"hf://{SMOL_REPO}/{SMOL_FILE}"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"model hf://{SMOL_REPO}/{SMOL_FILE}: downloaded" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("(100%)")
    assert "\r" not in proc.stderr  # log lines, not a redrawn bar


def test_models_lists_what_is_cached(
    hub: StandInHub,
    smol_hub_file: HubFile,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    s3_cache = tmp_path / "s3-cache"
    monkeypatch.setenv("NIMBUS_SOURCE__CACHE_DIR", str(s3_cache))
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.startswith("no cached models")
    parts = {f"m-Q8_0-0000{i}-of-00002.gguf": HubFile.of(b"GGUF" + bytes(1000 * i)) for i in (1, 2)}
    tag = hub.add_repo("o/split", parts, revision="v2")
    run(capsys, "pull", f"hf://{SMOL_REPO}:Q4_1")
    run(capsys, "pull", "hf://o/split@v2")
    s3_cache.mkdir()
    (s3_cache / "0123456789abcdef-x.gguf").write_bytes(b"GGUF" + bytes(10))
    (s3_cache / ".partial-abc").write_bytes(b"half")
    code, out, _ = run(capsys, "models", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert set(rows) == {
        f"hf://{SMOL_REPO}/{SMOL_FILE}",
        "hf://o/split/m-Q8_0-00001-of-00002.gguf@v2",
        str(s3_cache / "0123456789abcdef-x.gguf"),
    }
    assert rows[f"hf://{SMOL_REPO}/{SMOL_FILE}"]["size"] == smol_hub_file.size
    assert rows["hf://o/split/m-Q8_0-00001-of-00002.gguf@v2"]["size"] == 1004 + 2004
    assert tag in rows["hf://o/split/m-Q8_0-00001-of-00002.gguf@v2"]["path"]
    code, out, _ = run(capsys, "models")
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "SIZE", "PATH"]
    assert any(
        line.startswith(f"hf://{SMOL_REPO}/{SMOL_FILE}") and "98.4 MB" in line for line in lines
    )
    # Every listed spec serves: it resolves from the cache.
    code, out, _ = run(capsys, "pull", "hf://o/split/m-Q8_0-00001-of-00002.gguf@v2")
    assert code == 0 and len(hub.gets) == 3


def test_inspect_the_bundled_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "default", "--ctx", "4096", "--slots", "2")
    assert code == 0
    got = fields(out)
    assert got["architecture"].startswith("llama")
    assert got["parameters"] == "134.5 M"
    assert got["quantization"].startswith("Q4_1 (tensors: Q4_1 x210, F32 x61, Q8_0 x1)")
    assert got["trained ctx"] == "8,192 tokens"
    assert got["layers"] == "30 layers, 9 heads, 3 KV heads, head size 64, width 576"
    assert got["vocabulary"] == "49,152 tokens"
    assert got["chat template"] == "yes"
    assert "for --ctx 4096 --slots 2: weights 94 + KV cache 90 +" in got["memory"]


def test_inspect_json_and_platform(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "default", "--json", "--platform", "lambda")
    assert code == 0
    data = json.loads(out)
    header = data["header"]
    assert (header["architecture"], header["layers"], header["kv_heads"][0]) == ("llama", 30, 3)
    assert data["chat_template"] is True
    memory = data["memory"]
    assert memory["total"] == sum(memory[k] for k in ("weights", "kv_cache", "compute", "runtime"))
    assert (memory["n_ctx"], memory["slots"]) == (2048, 4)  # the settings' defaults
    assert data["platform"]["platform"] == "lambda" and data["platform"]["fits"] is True
    assert data["platform"]["settings"]["MemorySize"] == "1024"


@pytest.mark.parametrize(
    ("platform", "expect"),
    [
        ("lambda", "MemorySize 1,024 MB (0.6 vCPU, 2 cores)"),
        ("modal", "cpu=2, memory="),
        ("cloudflare", "a Worker has 128 MB and no llama.cpp"),
    ],
)
def test_inspect_platform_lines(
    platform: str, expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "inspect", "default", "--platform", platform)
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith(platform))
    assert expect in line


def test_inspect_a_hub_model_without_a_chat_template(
    hub: StandInHub, gemma_hub_file: HubFile, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add_repo(GEMMA_REPO, {GEMMA_FILE: gemma_hub_file})
    code, out, _ = run(capsys, "inspect", f"hf://{GEMMA_REPO}:Q4_K_M")
    assert code == 0
    assert "gemma3 (Gemma 3 270m)" in out
    assert "268.1 M" in out and "Q4_K_M (tensors:" in out and "32,768 tokens" in out
    assert "18 layers, 4 heads, 1 KV heads, head size 256, width 640, sliding window 512" in out
    assert "262,144 tokens" in out
    assert "none: chat needs NIMBUS_ENGINE__CHAT_TEMPLATE" in out


def test_inspect_refuses_out_of_range_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "inspect", "default", "--ctx", "5")
    assert code == 2
    assert err.splitlines() == [
        "nimbus: error: --ctx: Input should be greater than or equal to 128"
    ]
    code, _, err = run(capsys, "inspect", "default", "--slots", "0")
    assert code == 2 and err.startswith("nimbus: error: --slots: ")


def test_inspect_of_a_missing_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "inspect", str(tmp_path / "nope.gguf"))
    assert code == 2 and len(err.splitlines()) == 1 and "not found" in err
