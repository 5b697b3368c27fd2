"""The CloudWatch recorder: EMF (embedded metric format) lines through AWS Lambda Powertools.

Values are buffered in the Powertools ``Metrics`` object and printed when the invocation's
metrics are flushed (its ``log_metrics`` decorator, or ``flush_metrics()``). A metric with
dimensions (``Metric.emf_dimensions``) goes out at once as its own document, Powertools'
``single_metric``, so its dimensions do not attach to the other metrics of the invocation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from core.metrics.catalog import Metric


class MetricsBuffer(Protocol):
    """What is used of aws_lambda_powertools.Metrics."""

    def add_metric(self, name: str, unit: str, value: float) -> None: ...


class EmfRecorder:
    def __init__(self, metrics: MetricsBuffer, *, namespace: str, service: str) -> None:
        self.metrics = metrics
        self.namespace = namespace
        self.service = service

    def record(self, metric: Metric, value: float, labels: Mapping[str, str]) -> None:
        dimensions = {k: labels[k] for k in metric.emf_dimensions if k in labels}
        if not dimensions:
            self.metrics.add_metric(metric.emf_name, metric.emf_unit, value)
            return
        from aws_lambda_powertools.metrics import single_metric  # the aws extra, Lambda only

        with single_metric(
            name=metric.emf_name,
            unit=metric.emf_unit,  # type: ignore[arg-type]  # Powertools takes the unit's name
            value=value,
            namespace=self.namespace,
            default_dimensions={"service": self.service},
        ) as single:
            for name, value_ in dimensions.items():
                single.add_dimension(name=name, value=value_)
