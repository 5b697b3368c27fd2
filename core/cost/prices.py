"""The price book: the dated prices in ``prices.toml``, with a user's file and command-line
overrides on top. Every price keeps its unit, its source and the date it was read, so a table
built from it can say where each number came from."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from core.errors import InvalidParameterError

API_PREFIX = "api."
API_SIDES = (".input", ".output")
GPU_PREFIX = "modal.gpu_second."
# Units of the entries a user may add (the others must already exist: a typo is refused).
_NEW_ENTRY_UNITS = {
    ".input": "USD per 1M input tokens",
    ".output": "USD per 1M output tokens",
    GPU_PREFIX: "USD per GPU-second",
}


@dataclass(frozen=True)
class Price:
    key: str
    value: float
    unit: str
    source: str
    read: str
    read_via: str = ""
    note: str = ""
    overridden: bool = False


class PriceBook:
    """Prices by flat key (``lambda.gb_second_x86_64``, ``api.gpt-5-nano.output``)."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    def __contains__(self, key: str) -> bool:
        return key in self._prices

    def __iter__(self) -> Any:
        return iter(self._prices.values())

    def get(self, key: str) -> float:
        return self.entry(key).value

    def entry(self, key: str) -> Price:
        try:
            return self._prices[key]
        except KeyError:
            raise InvalidParameterError(
                f"no price {key!r} in the price book", param="price"
            ) from None

    def apis(self) -> list[str]:
        """API names with both an input and an output price."""
        names = []
        for key in self._prices:
            if key.startswith(API_PREFIX) and key.endswith(".input"):
                name = key[len(API_PREFIX) : -len(".input")]
                if f"{API_PREFIX}{name}.output" in self._prices:
                    names.append(name)
        return names

    def api(self, name: str) -> tuple[float, float]:
        """(input, output) USD per 1M tokens of API ``name``."""
        if name not in self.apis():
            raise InvalidParameterError(
                f"unknown API {name!r}; priced: {', '.join(self.apis())} "
                "(add one with --price api.NAME.input=X --price api.NAME.output=Y)",
                param="api",
            )
        return self.get(f"{API_PREFIX}{name}.input"), self.get(f"{API_PREFIX}{name}.output")

    def gpus(self) -> list[str]:
        return [k[len(GPU_PREFIX) :] for k in self._prices if k.startswith(GPU_PREFIX)]

    def with_overrides(self, values: Mapping[str, float], source: str, today: str) -> PriceBook:
        """A copy with ``values`` replacing (or, for APIs and GPUs, adding) prices; each replaced
        entry keeps its unit and names ``source`` and ``today`` as where and when it was read."""
        prices = dict(self._prices)
        for key, value in values.items():
            _check_value(key, value)
            if key in prices:
                prices[key] = replace(
                    prices[key],
                    value=value,
                    source=source,
                    read=today,
                    read_via="",
                    note="",
                    overridden=True,
                )
                continue
            unit = _new_entry_unit(key)
            if unit is None:
                raise InvalidParameterError(
                    f"unknown price {key!r} (from {source}); known: {', '.join(sorted(prices))}; "
                    "new ones may be api.NAME.input / api.NAME.output or modal.gpu_second.NAME",
                    param="price",
                )
            prices[key] = Price(key, value, unit, source, today, overridden=True)
        return PriceBook(prices)


def _new_entry_unit(key: str) -> str | None:
    if key.startswith(API_PREFIX):
        for side in API_SIDES:
            if key.endswith(side) and len(key) > len(API_PREFIX) + len(side):
                return _NEW_ENTRY_UNITS[side]
        return None
    if key.startswith(GPU_PREFIX) and len(key) > len(GPU_PREFIX):
        return _NEW_ENTRY_UNITS[GPU_PREFIX]
    return None


def _check_value(key: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise InvalidParameterError(
            f"price {key!r} must be a finite number >= 0, not {value!r}", param="price"
        )


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(flat key, leaf) pairs; a leaf is a number or a table with a ``value``."""
    for name, node in tree.items():
        key = f"{prefix}{name}"
        if isinstance(node, Mapping) and "value" not in node:
            yield from _flatten(node, key + ".")
        else:
            yield key, node


def _number(key: str, raw: Any, where: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidParameterError(
            f"price {key!r} in {where} is not a number: {raw!r}", param="prices"
        )
    return float(raw)


def default_book() -> PriceBook:
    """The prices shipped with nimbus (``core/cost/prices.toml``)."""
    text = resources.files("core.cost").joinpath("prices.toml").read_text(encoding="utf-8")
    prices: dict[str, Price] = {}
    for key, leaf in _flatten(tomllib.loads(text)):
        prices[key] = Price(
            key=key,
            value=_number(key, leaf["value"], "prices.toml"),
            unit=str(leaf["unit"]),
            source=str(leaf["source"]),
            read=str(leaf["read"]),
            read_via=str(leaf.get("read_via", "")),
            note=str(leaf.get("note", "")),
        )
    return PriceBook(prices)


def read_override_file(path: Path) -> dict[str, float]:
    """``{flat key: value}`` from a user's TOML file: the shipped file's shape (tables with a
    ``value``) or plain numbers (``[lambda]`` then ``gb_second_x86_64 = 0.00002``)."""
    try:
        tree = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidParameterError(
            f"cannot read price file {path}: {exc.strerror}", param="prices"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidParameterError(
            f"price file {path} is not TOML: {exc}", param="prices"
        ) from None
    out: dict[str, float] = {}
    for key, leaf in _flatten(tree):
        raw = leaf["value"] if isinstance(leaf, Mapping) else leaf
        out[key] = _number(key, raw, str(path))
    return out


def parse_assignments(items: Iterable[str]) -> dict[str, float]:
    """``KEY=VALUE`` strings from the command line."""
    out: dict[str, float] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        try:
            if not sep or not key:
                raise ValueError
            out[key] = float(raw)
        except ValueError:
            raise InvalidParameterError(
                f"--price wants KEY=NUMBER (e.g. lambda.gb_second_x86_64=0.0000166667), "
                f"not {item!r}",
                param="price",
            ) from None
    return out


def load_book(
    files: Iterable[Path] = (), assignments: Iterable[str] = (), today: str | None = None
) -> PriceBook:
    """Shipped prices, then each file, then the command line's ``KEY=VALUE`` on top."""
    day = today or dt.date.today().isoformat()
    book = default_book()
    for path in files:
        book = book.with_overrides(read_override_file(path), str(path), day)
    values = parse_assignments(assignments)
    if values:
        book = book.with_overrides(values, "command line", day)
    return book
