"""The README and docs/ hold together: the README stays a short front door that links every page,
every relative link and #anchor resolves, the docs name exactly the values the enumerated settings
accept, the IAM notes name both actions a function URL caller needs, and the text speaks of the
product (no issue numbers)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code blocks
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_is_a_short_front_door_that_links_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for page in DOCS:
        assert f"(docs/{page.name})" in text, page.name
    for section in ("Prerequisites", "Two commands", "Calling it", "Documentation", "layout"):
        assert re.search(rf"^## .*{section}", text, re.M | re.I), section


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def enumerated_settings() -> dict[str, tuple[str, ...]]:
    """NIMBUS_* variable -> the values its Literal type accepts, for every such setting."""
    found: dict[str, tuple[str, ...]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, env + "__")
            elif typing.get_origin(annotation) is typing.Literal:
                found[env] = tuple(str(v) for v in typing.get_args(annotation))

    walk(Settings, "NIMBUS_")
    return found


def test_docs_name_exactly_the_values_each_enumerated_setting_accepts() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    settings = enumerated_settings()
    assert "NIMBUS_SECURITY__PROMPT__INJECTION_POLICY" in settings  # the walk finds nested ones
    for env, values in settings.items():
        row = f"| `{env}` | " + ", ".join(f"`{v}`" for v in values) + " |"
        assert row in page, row


def test_iam_notes_name_both_actions_a_function_url_caller_needs() -> None:
    # Since October 2025 a function URL checks lambda:InvokeFunction too: wherever the docs,
    # the template or the edge's config mention InvokeFunctionUrl, InvokeFunction is named nearby.
    files = [
        *PAGES,
        ROOT / "deploy" / "aws" / "template.yaml",
        ROOT / "handlers" / "cloudflare" / "wrangler.toml",
    ]
    lonely = []
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"InvokeFunctionUrl", text):
            nearby = text[max(0, m.start() - 300) : m.end() + 300]
            if not re.search(r"InvokeFunction(?!Url)", nearby):
                lonely.append(f"{path.name}: ...{text[m.start() - 60 : m.end() + 20]!r}")
    assert not lonely, lonely


def test_docs_speak_of_the_product() -> None:
    for page in PAGES:
        text = page.read_text()
        for pattern in (r"\bissue #?\d+", r"\bthis session\b", r"\bthis box\b"):
            assert not re.search(pattern, text, re.I), f"{page.name}: {pattern}"
