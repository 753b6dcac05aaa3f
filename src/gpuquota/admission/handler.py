"""One admission review, from bytes to bytes, read top to bottom: parse, route, judge, answer.

- ``review.parse_review``: the envelope;
- ``routing.route``: what kind of request it is (a workload, its DELETE, a ``/scale`` of it, or not ours);
- ``judge.Judge``: the outcome, with owner claims checked by ``trust.Trust`` — no HTTP, metrics or audit in it;
- ``answer.Answer``: the one place an outcome becomes the reply, the metrics and the audit line.

Judging may need the ledger: ``begin`` answers at once when it does not, and otherwise returns a ``Pending`` whose
``run`` does the rest. The server runs ``Pending.run`` inline for SQLite (a local file: a thread hop would cost more
than the query) and in a thread pool for PostgreSQL (and always off the event loop when it reads the API server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from gpuquota.admission.answer import Answer, Reply, bad_request, ledger_down_message
from gpuquota.admission.audit import AuditLog
from gpuquota.admission.judge import Judge, guarded
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.lws import LwsStatefulSets
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.outcome import Deferred, Invalid, Skipped
from gpuquota.admission.owners import OwnerCache
from gpuquota.admission.references import ApiReferences
from gpuquota.admission.review import ReviewError, parse_review
from gpuquota.admission.routing import Route, route, scale_parent
from gpuquota.admission.trust import Trust
from gpuquota.clusters import DEFAULT_CLUSTER
from gpuquota.kube import KubeApi
from gpuquota.ledger import Ledger
from gpuquota.workloads import DEFAULT_ALL_DEVICES, ClaimSource, GpuResources

__all__ = ["Admission", "Pending", "Reply", "bad_request", "ledger_down_message"]


@dataclass(slots=True)
class Pending:
    """The ledger part of a review; ``run`` is sync and safe to call from a worker thread. ``blocking``: it also
    calls the API server, so it must leave the event loop even where ledger calls run inline (SQLite)."""

    run: Callable[[], Reply]
    blocking: bool = False


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Admission:
    """The webhook's decision path. One instance per server process; every method is thread-safe."""

    def __init__(
        self,
        live: LiveConfig,
        ledger: Ledger,
        metrics: WebhookMetrics,
        audit: AuditLog,
        *,
        namespaces: NamespaceCache | None = None,
        inventory_models: Callable[[], tuple[str, ...]] | None = None,
        owners: OwnerCache | None = None,
        clock: Callable[[], datetime] = _utcnow,
        trusted_controllers: Iterable[str] = (),
        kube: KubeApi | None = None,
        gpu_resources: GpuResources | None = None,
        all_devices: int = DEFAULT_ALL_DEVICES,
        claims: ClaimSource | None = None,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self.live = live
        self.metrics = metrics
        # checks the StatefulSet an LWS pod's claim rests on (None kube: such claims are never believed)
        lws = LwsStatefulSets(kube, on_error=lambda: metrics.errors.labels("kube_unavailable").inc())
        self.trust = Trust(owners=owners or OwnerCache(), lws=lws, can_read_cluster=kube is not None,
                           trusted_controllers=trusted_controllers)
        self.judge = Judge(ledger, self.trust, clock=clock, namespaces=namespaces,
                           inventory_models=inventory_models or (lambda: ()), kube=kube,
                           gpu_resources=gpu_resources, all_devices=all_devices, claims=claims, cluster=cluster,
                           references=ApiReferences(kube))  # a TrainJob's runtime (None kube: unreadable)
        self.answer = Answer(metrics, audit, clock)

    def begin(self, body: bytes, started: float | None = None) -> Reply | Pending:
        started = time.perf_counter() if started is None else started
        try:
            request = parse_review(body)
        except ReviewError as exc:
            return self.answer.bad_review(exc.uid, exc.message, started)
        try:
            step = route(request)
            if step is Route.SCALE:
                parent = scale_parent(request)
                if parent is None:
                    return self.answer.reply(request, Skipped(), started)
                request = parent
        except ReviewError as exc:
            return self.answer.reply(request, Invalid(request.kind.kind, exc.message), started)
        result = self.judge.begin(step, request, self.live.current)
        if isinstance(result, Deferred):
            deferred, judged = result, request
            return Pending(lambda: self.answer.reply(judged, guarded(deferred.run, judged.uid), started),
                           blocking=deferred.blocking)
        return self.answer.reply(request, result, started)
