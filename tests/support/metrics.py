"""Reading metrics back in tests: Prometheus exposition text and CloudWatch EMF documents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One /metrics body: ``value(name, **labels)`` sums the samples of ``name`` whose labels
    include ``labels`` (0 when there are none)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
        self.types = {family.name: family.type for family in text_string_to_metric_families(text)}

    def value(self, name: str, **labels: str) -> float:
        return sum(
            v
            for n, have, v in self.samples
            if n == name and all(have.get(k) == want for k, want in labels.items())
        )

    def has(self, name: str) -> bool:
        return any(n == name for n, _, _ in self.samples)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def emf_values(docs: Iterable[dict[str, Any]], name: str) -> list[float]:
    """Every value of EMF metric ``name`` across ``docs``."""
    out: list[float] = []
    for doc in docs:
        if name in doc:
            value = doc[name]
            out += value if isinstance(value, list) else [value]
    return out


def emf_units(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Metric name -> unit as declared in the documents' _aws metadata."""
    units: dict[str, str] = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                units[metric["Name"]] = metric["Unit"]
    return units
