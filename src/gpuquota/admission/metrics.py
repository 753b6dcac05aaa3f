"""The webhook's Prometheus metrics, named exactly as ``docs/metrics.md`` (an interface: alerts and the dashboard
query these names).

Cardinality stays bounded: a ``tenant`` subject is a known tenant or ``other``; jurisdictions are ISO codes,
tiers and rules come from the profile, kinds from the adapters' fixed list. Usage gauges are set from the figures
each decision already read from the ledger, so scraping never touches the database.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gpuquota.admission.transport import TransportStats
from gpuquota.boundedcache import CacheStats
from gpuquota.domain import Decision, Metric, Scope, Usage, UsageKey
from gpuquota.labelled_registry import cluster_registry
from gpuquota.policy.model import CLUSTER_SEPARATOR

OTHER_TENANT: Final = "other"
_LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)

# (model, class) -> (tpp, gpus): the cluster capacity the webhook's inventory view sees.
CapacityReader = Callable[[], Iterable[tuple[str, str, float, float]]]


def window_label(window: str) -> str:
    """``calendar-year:2026`` → ``calendar-year``; ``rolling-30d:2026-11-26`` → ``rolling-30d`` (no dates in labels)."""
    return window.partition(":")[0]


class _CapacityCollector(Collector):
    """Reads the inventory at scrape time: capacity changes with node events, not with admissions."""

    def __init__(self, read: CapacityReader, unlabelled: Callable[[], int] = lambda: 0) -> None:
        self._read = read
        self._unlabelled = unlabelled

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tpp = GaugeMetricFamily("gpuquota_cluster_capacity_tpp", "TPP of the GPU nodes the webhook sees",
                                labels=["model", "class"])
        gpus = GaugeMetricFamily("gpuquota_cluster_gpus", "Physical GPUs the webhook sees", labels=["model", "class"])
        for model, gpu_class, model_tpp, model_gpus in self._read():
            tpp.add_metric([model, gpu_class], model_tpp)
            gpus.add_metric([model, gpu_class], model_gpus)
        yield tpp
        yield gpus
        yield GaugeMetricFamily("gpuquota_cluster_unlabelled_gpu_nodes",
                                "Nodes showing GPUs with no label naming their model (counted as an unknown part)",
                                value=self._unlabelled())

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _ActiveReservationsCollector(Collector):
    """``gpuquota_reservations_active`` with a sample only when the count is known: a made-up 0 would read as
    "nothing admitted" on a dashboard."""

    def __init__(self, metrics: WebhookMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("gpuquota_reservations_active", "Reservations in state reserved or running")
        if self._metrics.active_reservations is not None:
            family.add_metric([], self._metrics.active_reservations)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _TransportCollector(Collector):
    """Connection counts and refusals of one listener, read from its transport counters at scrape time."""

    def __init__(self, stats: TransportStats, listener: str) -> None:
        self._stats = stats
        self._listener = listener

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats, labels = self._stats, [self._listener]
        open_ = GaugeMetricFamily("gpuquota_http_connections", "Open HTTP connections", labels=["listener"])
        open_.add_metric(labels, stats.open)
        yield open_
        refused = CounterMetricFamily("gpuquota_http_connections_refused",
                                      "Connections closed at once because the connection cap was reached",
                                      labels=["listener"])
        refused.add_metric(labels, stats.refused)
        yield refused
        timeouts = CounterMetricFamily("gpuquota_http_read_timeouts",
                                       "Connections closed because a request's headers or body came too slowly",
                                       labels=["listener", "phase"])
        timeouts.add_metric([self._listener, "headers"], stats.header_timeouts)
        timeouts.add_metric([self._listener, "body"], stats.body_timeouts)
        yield timeouts

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _CacheCollector(Collector):
    """Hits, misses, evictions and size of the bounded caches, read from their counters at scrape time (a
    Prometheus counter per lookup would cost more than most lookups)."""

    def __init__(self, caches: Iterable[Callable[[], CacheStats]]) -> None:
        self._caches = tuple(caches)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        every = [read() for read in self._caches]
        requests = CounterMetricFamily("gpuquota_cache_requests", "Cache lookups by result",
                                       labels=["cache", "result"])
        evictions = CounterMetricFamily("gpuquota_cache_evictions",
                                        "Entries dropped to stay within the cache's entry or byte bound",
                                        labels=["cache"])
        entries = GaugeMetricFamily("gpuquota_cache_entries", "Entries held", labels=["cache"])
        size = GaugeMetricFamily("gpuquota_cache_bytes", "Estimated bytes held (the strings the entries keep)",
                                 labels=["cache"])
        limit = GaugeMetricFamily("gpuquota_cache_max_bytes", "The cache's byte bound", labels=["cache"])
        for stats in every:
            requests.add_metric([stats.name, "hit"], stats.hits)
            requests.add_metric([stats.name, "miss"], stats.misses)
            evictions.add_metric([stats.name], stats.evictions)
            entries.add_metric([stats.name], stats.entries)
            size.add_metric([stats.name], stats.bytes)
            limit.add_metric([stats.name], stats.max_bytes)
        yield from (requests, evictions, entries, size, limit)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _changed(old: float | None, new: float) -> bool:
    """Whether setting ``new`` would change what a scrape shows (-0.0 and 0.0 print differently; NaN never equals)."""
    return old != new or (new == 0.0 and math.copysign(1.0, old) != math.copysign(1.0, new))


class WebhookMetrics:
    """One registry per server, so tests can run several apps in one process without colliding."""

    def __init__(self, known_tenants: Callable[[], frozenset[str]], cluster: str | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: unused, double the scrape
        self.registry = cluster_registry(cluster, auto_describe=True)  # cluster: --cluster-name, when given
        self._known_tenants = known_tenants
        r = self.registry
        self.requests = Counter("gpuquota_admission_requests", "Admission reviews handled",
                                ["operation", "kind", "decision", "rule"], registry=r)
        self.duration = Histogram("gpuquota_admission_duration_seconds",
                                  "Time from body received to response ready", ["kind"],
                                  buckets=_LATENCY_BUCKETS, registry=r)
        self.reserved_tpp = Gauge("gpuquota_reserved_tpp", "TPP currently reserved (concurrent)",
                                  ["scope", "subject"], registry=r)
        self.used_operations = Gauge("gpuquota_used_operations", "Operations counted in the current window",
                                     ["scope", "subject", "window"], registry=r)
        self.cap = Gauge("gpuquota_cap", "The cap in force (after exemptions)",
                         ["rule", "scope", "subject", "metric"], registry=r)
        self.cap_utilisation = Gauge("gpuquota_cap_utilisation_ratio", "Used divided by cap",
                                     ["rule", "scope", "subject", "metric"], registry=r)
        self.policy_info = Gauge("gpuquota_policy_info", "The policy profile in force", ["profile", "version"],
                                 registry=r)
        self.errors = Counter("gpuquota_errors", "Errors by type", ["type"], registry=r)
        self.unknown_gpu_models = Counter(
            "gpuquota_unknown_gpu_models",
            "GPU workloads counted at a model the catalog lacks (NVML estimate or the policy's unknown-part figure)",
            registry=r,
        )
        self.ledger_up = Gauge("gpuquota_ledger_up", "1 when the last ledger call succeeded, else 0", registry=r)
        self.ledger_full = Gauge("gpuquota_ledger_full",
                                 "1 when the last GPU admission found the ledger's storage full, else 0", registry=r)
        self.active_reservations: int | None = None  # unknown until the ledger can count them
        r.register(_ActiveReservationsCollector(self))
        for error_type in ("bad_request", "ledger_unavailable", "ledger_full", "reload_failed", "internal",
                           "kube_unavailable"):
            self.errors.labels(error_type)  # exported at 0 so rate() works before the first error
        self._policy_labels: tuple[str, str] | None = None
        self._request_children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}
        self._usage_children: dict[UsageKey, Gauge | None] = {}
        # The value each usage/cap gauge child was last set to (only observe_usage sets them, and children are never
        # removed): most reviews read the same figures as the one before, and Gauge.set costs a lock and a check.
        self._shown: dict[Gauge, float] = {}
        self._gauge_lock = threading.Lock()
        self._cap_children: dict[tuple[str, UsageKey], tuple[Gauge, Gauge] | None] = {}

    def watch_capacity(self, read: CapacityReader, unlabelled: Callable[[], int] = lambda: 0) -> None:
        self.registry.register(_CapacityCollector(read, unlabelled))

    def watch_caches(self, caches: Iterable[Callable[[], CacheStats]]) -> None:
        self.registry.register(_CacheCollector(caches))

    def watch_transport(self, stats: TransportStats, listener: str) -> None:
        self.registry.register(_TransportCollector(stats, listener))

    def subject(self, key: UsageKey) -> str:
        if key.scope is Scope.TENANT and key.subject.partition(CLUSTER_SEPARATOR)[0] not in self._known_tenants():
            return OTHER_TENANT
        return key.subject

    def set_policy(self, profile: str, version: str) -> None:
        if self._policy_labels is not None:
            self.policy_info.remove(*self._policy_labels)
        self._policy_labels = (profile, version)
        self.policy_info.labels(profile, version).set(1)

    def observe_request(self, operation: str, kind: str, decision: str, rule: str, seconds: float) -> None:
        key = (operation, kind, decision, rule)
        children = self._request_children.get(key)
        if children is None:  # labels() validates and locks on every call: resolve each combination once
            children = (self.requests.labels(*key), self.duration.labels(kind))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_usage(self, usage: Usage, decision: Decision | None, admitted: bool) -> None:
        """Set the usage and cap gauges from what a decision read (and, when admitted, what it added)."""
        added: dict[UsageKey, float] = {}
        if admitted and decision is not None:
            for charge in decision.charges:
                added[charge.key] = added.get(charge.key, 0.0) + charge.amount
        shown = self._shown
        with self._gauge_lock:  # the check and the set together: what ``_shown`` says is what a scrape reads
            for key in (usage.keys() | added.keys()) if added else usage:  # no set to build when nothing was added
                gauge = self._usage_gauge(key)
                if gauge is not None:
                    value = float(usage.get(key, 0.0) + added.get(key, 0.0))
                    if _changed(shown.get(gauge), value):
                        gauge.set(value)
                        shown[gauge] = value
            if decision is None:
                return
            for outcome in decision.outcomes:
                gauges = self._cap_gauges(outcome.rule_id, outcome.key)
                if gauges is None:
                    continue
                used = outcome.used + (outcome.requested if admitted else 0.0)
                for gauge, value in ((gauges[0], float(outcome.cap)),
                                     (gauges[1], float(used / outcome.cap if outcome.cap > 0 else 0.0))):
                    if _changed(shown.get(gauge), value):
                        gauge.set(value)
                        shown[gauge] = value

    def _usage_gauge(self, key: UsageKey) -> Gauge | None:
        """The gauge child of a ledger key (``None`` for unknown tenants: an aggregate over them cannot be read
        from one of them). Resolved once per key: ``labels()`` validates and locks on every call."""
        try:
            return self._usage_children[key]
        except KeyError:
            pass
        subject = self.subject(key)
        child: Gauge | None
        if subject == OTHER_TENANT:
            child = None
        elif key.metric is Metric.CONCURRENT_TPP:
            child = self.reserved_tpp.labels(key.scope.value, subject)
        else:
            child = self.used_operations.labels(key.scope.value, subject, window_label(key.window))
        if len(self._usage_children) > 100_000:  # windows roll daily: never grow without bound
            self._usage_children.clear()
        self._usage_children[key] = child
        return child

    def _cap_gauges(self, rule_id: str, key: UsageKey) -> tuple[Gauge, Gauge] | None:
        cache_key = (rule_id, key)
        try:
            return self._cap_children[cache_key]
        except KeyError:
            pass
        subject = self.subject(key)
        children: tuple[Gauge, Gauge] | None = None
        if subject != OTHER_TENANT:
            labels = (rule_id, key.scope.value, subject, key.metric.value)
            children = (self.cap.labels(*labels), self.cap_utilisation.labels(*labels))
        if len(self._cap_children) > 100_000:
            self._cap_children.clear()
        self._cap_children[cache_key] = children
        return children

    def tenants_changed(self) -> None:
        """Known tenants changed (tenants file reloaded): label resolution must be redone."""
        self._usage_children.clear()
        self._cap_children.clear()
