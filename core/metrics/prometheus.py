"""The Prometheus recorder and exposition (prometheus-client; imported only when /metrics is on).

Each app gets its own registry (never prometheus-client's process-wide default), so two apps in
one process, as in the tests, count separately."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from core.metrics import catalog
from core.metrics.recorder import Sample


class PrometheusRecorder:
    """Request-sourced metrics as prometheus-client instruments; engine-sourced ones read from
    ``samples()`` on every scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._instruments: dict[str, Any] = {}
        for metric in catalog.ALL:
            if metric.source != "request":
                continue
            name = catalog.PREFIX + metric.name
            labels = list(metric.labels)
            if metric.kind == "counter":
                inst: Any = Counter(name, metric.help, labels, registry=self.registry)
            elif metric.kind == "histogram":
                inst = Histogram(
                    name, metric.help, labels, registry=self.registry, buckets=metric.buckets
                )
            else:
                inst = Gauge(name, metric.help, labels, registry=self.registry)
            self._instruments[metric.name] = inst

    def read_on_scrape(self, samples: Callable[[], Iterable[Sample]]) -> None:
        """Expose what ``samples()`` returns, read afresh on every scrape."""
        self.registry.register(_SampleCollector(samples))

    def record(self, metric: catalog.Metric, value: float, labels: Mapping[str, str]) -> None:
        inst = self._instruments.get(metric.name)
        if inst is None:
            return  # engine-sourced: read at scrape time instead
        if labels:
            inst = inst.labels(**labels)
        if metric.kind == "counter":
            inst.inc(value)
        elif metric.kind == "histogram":
            inst.observe(value)
        else:
            inst.set(value)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SampleCollector:
    def __init__(self, samples: Callable[[], Iterable[Sample]]) -> None:
        self._samples = samples

    def describe(self) -> list[Metric]:
        return []  # names are read from the catalog; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        grouped: dict[catalog.Metric, list[Sample]] = defaultdict(list)
        for sample in self._samples():
            grouped[sample.metric].append(sample)
        for metric, samples in grouped.items():
            name = catalog.PREFIX + metric.name
            family: CounterMetricFamily | GaugeMetricFamily
            if metric.kind == "counter":
                family = CounterMetricFamily(name, metric.help, labels=metric.labels)
            else:
                family = GaugeMetricFamily(name, metric.help, labels=metric.labels)
            for sample in samples:
                family.add_metric([sample.labels[k] for k in metric.labels], sample.value)
            yield family
