"""benchmarks.cold_start: where a Python server's start goes."""

from __future__ import annotations

from benchmarks.cold_start import SERVE_IMPORTS, import_cpu_ms, imports_by_package

IMPORTTIME = """import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:      3000 |       5000 | fastapi.routing
import time:      2000 |       2000 |   fastapi.params
import time:       500 |        500 |     pydantic.v1
import time:        40 |         40 | core.app
some other line
"""


def test_importtime_lines_are_summed_by_top_level_package() -> None:
    by_package = imports_by_package(IMPORTTIME)
    assert by_package == {"_io": 120, "fastapi": 5000, "pydantic": 500, "core": 40}


def test_the_serve_imports_are_timed_step_by_step() -> None:
    start, steps = import_cpu_ms(runs=1)
    assert start > 0 and len(steps) == len(SERVE_IMPORTS)
    named = dict(zip((m for m, _ in SERVE_IMPORTS), steps, strict=True))
    # The web framework is never free; a module imported by an earlier step costs ~nothing.
    assert named["fastapi"] > 5 and named["core.cli"] < named["fastapi"]
