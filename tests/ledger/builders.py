"""Realistic reservations for ledger tests: an 8×H100 training job of a Japanese tenant under the 2025 tiers."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuquota.domain import Charge, Metric, Scope, UsageKey, calendar_year_window, rolling_window
from gpuquota.ledger import AuditRecord, Reservation, WorkloadRef

H100_TPP = 15_832.0  # 989.4 dense FP16/BF16 TFLOPS × 16 bits
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def concurrent(scope: Scope, subject: str) -> UsageKey:
    return UsageKey(scope, subject, Metric.CONCURRENT_TPP)


def yearly(scope: Scope, subject: str, when: datetime = NOW) -> UsageKey:
    return UsageKey(scope, subject, Metric.OPERATIONS, calendar_year_window(when.date()))


def rolling(scope: Scope, subject: str, days: int = 30, when: datetime = NOW) -> UsageKey:
    return UsageKey(scope, subject, Metric.OPERATIONS, rolling_window(days, when.date()))


def audit(uid: str, workload: WorkloadRef, tenant: str, *, allowed: bool = True, when: datetime = NOW,
          gpus: float = 8, tpp: float = 8 * H100_TPP, jurisdiction: str | None = "JP", tier: str | None = "tier2",
          message: str = "admitted", dry_run: bool = False) -> AuditRecord:  # fmt: skip
    return AuditRecord(
        time=when, request_uid=uid, operation="CREATE", user="system:serviceaccount:ci:deployer",
        namespace=workload.namespace, kind=workload.kind, name=workload.name, tenant=tenant,
        jurisdiction=jurisdiction, tier=tier, allowed=allowed, dry_run=dry_run, message=message,
        rules=("tier2-tenant-concurrent",), warnings=(), gpus=gpus, model="nvidia-h100-sxm5-80gb", tpp=tpp,
        operations=None, profile="ai-diffusion-2025", profile_version="2025-01-15",
    )  # fmt: skip


def reservation(
    uid: str,
    *,
    tenant: str = "acme",
    jurisdiction: str | None = "JP",
    tier: str | None = "tier2",
    name: str | None = None,
    namespace: str = "acme-train",
    kind: str = "Job",
    group: str = "batch",
    gpus: float = 8,
    tpp: float | None = None,
    ops_per_second: float = 1.0e15,
    max_runtime_s: float | None = 3600.0,
    charges: tuple[Charge, ...] | None = None,
    tenant_cap: float | None = None,
    ops_cap: float | None = None,
    when: datetime = NOW,
    object_uid: str = "",
) -> Reservation:
    """A reservation with the charges ``decide()`` gives: tenant/jurisdiction/tier/cluster concurrent TPP and the
    tenant's operations (yearly and 30-day rolling), capped where a cap is given."""
    workload = WorkloadRef(namespace, kind, name or uid, group)
    tpp = gpus * H100_TPP if tpp is None else tpp
    operations = None if max_runtime_s is None else ops_per_second * max_runtime_s
    if charges is None:
        ops = operations or 0.0
        charges = (
            Charge(concurrent(Scope.TENANT, tenant), tpp, tenant_cap, "tenant-concurrent" if tenant_cap else None),
            Charge(concurrent(Scope.JURISDICTION, jurisdiction or "unknown"), tpp),
            Charge(concurrent(Scope.TIER, tier or "unknown"), tpp),
            Charge(concurrent(Scope.CLUSTER, "cluster"), tpp),
            Charge(yearly(Scope.TENANT, tenant, when), ops, ops_cap, "tenant-yearly-ops" if ops_cap else None),
            Charge(rolling(Scope.TENANT, tenant, 30, when), ops),
        )
    return Reservation(
        request_uid=uid, workload=workload, tenant=tenant, jurisdiction=jurisdiction, tier=tier,
        model="nvidia-h100-sxm5-80gb", gpus=gpus, tpp=tpp, operations=operations,
        operations_per_second=ops_per_second, max_runtime_s=max_runtime_s, profile="ai-diffusion-2025",
        profile_version="2025-01-15", charges=charges,
        audit=audit(uid, workload, tenant, when=when, gpus=gpus, tpp=tpp, jurisdiction=jurisdiction, tier=tier),
        object_uid=object_uid,
    )  # fmt: skip
