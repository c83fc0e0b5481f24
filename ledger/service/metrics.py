"""Prometheus metrics, declared one way by every service.

A :class:`MetricSet` owns a registry of its own (two apps in one process, as in
the tests, never collide) and the ``requests`` counter that
:func:`~sigledger.ledger.service.http.service_middleware` keeps; a service's
subclass declares the rest, one line each, with :meth:`~MetricSet.counter`,
:meth:`~MetricSet.gauge` and :meth:`~MetricSet.histogram`. ``GET /metrics``
answers with the registry (:func:`~sigledger.ledger.service.http.metrics_response`).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SECONDS_BUCKETS", "MetricSet"]

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
"""Histogram buckets for work that takes a millisecond to a few seconds."""


class MetricSet:
    """A service's metrics in a registry of their own.

    ``requests`` (labelled route and status code) is named ``requests_name``;
    the metric names are the service's public interface: never rename one.
    """

    def __init__(self, requests_name: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = self.counter(
            requests_name, "HTTP requests by route and status", "route", "code"
        )

    def counter(self, name: str, doc: str, *labels: str) -> Counter:
        """A counter in this set, with ``labels`` (none: a single value)."""
        return Counter(name, doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, *labels: str) -> Gauge:
        """A gauge in this set, with ``labels`` (none: a single value)."""
        return Gauge(name, doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
        """An unlabelled histogram in this set with the upper bounds ``buckets``."""
        return Histogram(name, doc, buckets=buckets, registry=self.registry)
