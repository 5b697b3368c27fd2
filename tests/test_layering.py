"""The shape of the code, kept by a test: which package may import which (read from the source,
so an import hidden in a rarely-run branch counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> packages it must never import (at any scope)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("handlers",),
    "core.engine": ("core.api", "core.http", "core.security", "fastapi", "starlette"),
    "core.sources": ("core.api", "core.http", "core.security", "core.engine", "fastapi"),
    "core.http": ("core.api", "core.security", "core.engine", "fastapi"),
    "core.metrics": ("core.api", "core.http", "core.security", "core.engine", "fastapi"),
    "core.security": ("core.api",),
    "core.settings": ("core.api", "core.http", "core.security", "core.engine", "fastapi"),
    "core.errors": ("core.api", "core.http", "core.security", "core.engine", "fastapi"),
}
# Cloud SDKs: core may use them only inside the optional backend that needs them, imported
# lazily (inside a function), so `nimbus serve` never needs them installed.
CLOUD_SDKS = ("boto3", "botocore", "aws_lambda_powertools", "modal", "mangum", "mypy_boto3_s3")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module scope?) for every import in the file; imports under
    ``if TYPE_CHECKING:`` are left out (they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, top))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not nested)

    visit(tree, True)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


CORE_FILES = sorted((ROOT / "core").rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_follow_the_layers(path: Path) -> None:
    module = _module_name(path)
    for imported, top in _imports(path):
        for package, banned in FORBIDDEN.items():
            if _within(module, package):
                hit = [b for b in banned if _within(imported, b)]
                assert not hit, f"{module} imports {imported} ({package} must not import {hit})"
        if top:
            assert not any(_within(imported, sdk) for sdk in CLOUD_SDKS), (
                f"{module} imports {imported} at module scope: import it inside the backend "
                "function that needs it"
            )


def test_the_checker_sees_imports_in_functions_and_skips_type_checking(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\nimport a.b\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    from c import d\n"
    )
    assert _imports(sample) == [("typing", True), ("a.b", True), ("c", False)]
