"""Pulls onto a small tmpfs, run by test_hf_disk_full.py inside a private mount namespace
(`unshare -m`): the mount exists only for this process and vanishes with it.

Prints one JSON object: for each case the error message and the files left on the disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.errors import ModelLoadError
from core.settings import ModelSourceSettings
from core.sources.hf import pull_hf_model
from tests.support.hub_standin import HubFile, StandInHub

FILE_SIZE = 12_000_000


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def case(root: Path, size: str, fill_during_download: int) -> dict[str, object]:
    root.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], check=True)
    with StandInHub() as hub:
        hub.add_repo("o/big", {"big-Q8_0.gguf": HubFile.of(b"GGUF" + bytes(FILE_SIZE - 4))})
        filler = root / "filler"

        def fill(_key: str) -> None:
            if fill_during_download:  # another writer takes the space once the download began
                filler.write_bytes(bytes(fill_during_download))

        hub.before_body = fill
        os.environ.update(HF_ENDPOINT=hub.url, HF_HOME=str(root / "hf"))
        message = None
        try:
            pull_hf_model("hf://o/big", ModelSourceSettings())
        except ModelLoadError as exc:
            message = exc.message
        filler.unlink(missing_ok=True)
        left = [f for f in files(root) if "/blobs/" in f or "/snapshots/" in f]
        free = shutil.disk_usage(root).free
    return {"message": message, "left": left, "free": free, "total": shutil.disk_usage(root).total}


def main() -> None:
    base = Path(sys.argv[1])
    out = {
        # Less free space than the Hub lists for the file: refused before downloading.
        "precheck": case(base / "small", "8m", 0),
        # Room at the start, gone during the download: the write fails with ENOSPC.
        "enospc": case(base / "filled", "20m", 12_000_000),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
