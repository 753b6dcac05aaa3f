"""Demands, tenants and profiles for the policy tests, built from the real catalog figures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import yaml

from gpuquota.catalog import load_catalog
from gpuquota.domain import Demand, Exemption, ModelSource, PodGroup, Purpose, Tenant, Weights
from gpuquota.policy import Policy, parse_policy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
H100 = "H100-SXM5-80GB"


def group(gpus: float, model: str = H100, *, pods: int = 1, role: str = "worker") -> PodGroup:
    """``pods`` pods of ``gpus`` GPUs each of a catalog model."""
    spec = load_catalog().get(model)
    assert spec is not None, model
    return PodGroup(role, pods, gpus, spec.key, ModelSource.SELECTOR, spec.tpp, spec.gpu_class)


def demand(
    gpus: float = 8,
    model: str = H100,
    *,
    pods: int = 1,
    purpose: Purpose = Purpose.TRAINING,
    weights: Weights = Weights.CLOSED,
    runtime_s: float | None = 72 * 3600.0,
    name: str = "llm-pretrain",
    kind: str = "PyTorchJob",
    groups: tuple[PodGroup, ...] | None = None,
    warnings: tuple[str, ...] = (),
) -> Demand:
    return Demand(
        kind=kind,
        namespace="team-ml",
        name=name,
        groups=groups if groups is not None else (group(gpus, model, pods=pods),),
        purpose=purpose,
        weights=weights,
        max_runtime_s=runtime_s,
        warnings=warnings,
    )


def tenant(jurisdiction: str | None = "BR", name: str = "globex", *exemptions: Exemption) -> Tenant:
    return Tenant(name=name, jurisdiction=jurisdiction, exemptions=exemptions)


def veu(expires: date | None = date(2027, 12, 31)) -> Exemption:
    return Exemption(kind="veu", id="VEU-2025-0042", expires=expires)


def licence(amount: float | None, expires: date | None = date(2027, 6, 30), rules: tuple[str, ...] = ()) -> Exemption:
    return Exemption(kind="licence", id="LIC-7", amount=amount, expires=expires, rules=rules)


BASE_PROFILE: dict[str, Any] = {
    "schema": 1,
    "name": "test-profile",
    "version": "1",
    "effective": "2026-01-01",
    "tiers": [
        {"name": "gold", "jurisdictions": ["US", "JP"]},
        {"name": "blocked", "jurisdictions": ["KP"]},
        {"name": "rest", "jurisdictions": []},
    ],
    "defaultTier": "rest",
    "defaultModel": H100,
    "rules": [],
}


def profile(*rules: dict[str, Any], **overrides: Any) -> Policy:
    """A small profile with the given rules (and top-level overrides), parsed through the real loader."""
    document = {**BASE_PROFILE, **overrides, "rules": list(rules)}
    return parse_policy(yaml.safe_load(yaml.safe_dump(document)), "test-profile.yaml")


def rule(rule_id: str, kind: str, amount: float, **fields: Any) -> dict[str, Any]:
    cap: dict[str, Any] = {"kind": kind, "amount": amount}
    if "window" in fields:
        cap["window"] = fields.pop("window")
    return {"id": rule_id, "cap": cap, **fields}
