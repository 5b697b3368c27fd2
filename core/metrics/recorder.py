"""Where measurements go: a Recorder takes one value of a catalog metric. Prometheus and EMF
implement it; the Telemetry object fans each event out to the recorders an app was given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core.metrics.catalog import Metric


class Recorder(Protocol):
    def record(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        """Counters add ``value``, histograms observe it, gauges are set to it. ``labels`` has
        exactly ``metric.labels`` as keys."""
        ...


@dataclass(frozen=True)
class Sample:
    """One engine-sourced value as read at scrape time."""

    metric: Metric
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
