"""Finding, parsing, validating and compiling profiles. The only I/O in the policy package lives here."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gpuquota.catalog import load_catalog
from gpuquota.domain import Action
from gpuquota.policy.errors import PolicyError
from gpuquota.policy.model import Policy, Rule, Tier
from gpuquota.policy.schema import ProfileSpec, RuleSpec
from gpuquota.tenancy.countries import country_codes
from gpuquota.tenancy.validation import describe, one_line

_PACKAGE = "gpuquota.policy.profiles"


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped with gpuquota (``ai-diffusion-2025``, ``unrestricted`` …)."""
    folder = resources.files(_PACKAGE)
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_policy(name_or_path: str) -> Policy:
    """A bundled profile by name, or a YAML file by path. Raises PolicyError naming the file and the field."""
    if name_or_path in bundled_profiles():
        text = resources.files(_PACKAGE).joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
        return parse_policy_text(text, f"bundled profile {name_or_path}")
    path = Path(name_or_path)
    if not path.is_file():
        bundled = ", ".join(bundled_profiles())
        raise PolicyError(f"{name_or_path}: no such profile file, and not a bundled profile (bundled: {bundled})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read: {exc}") from None
    return parse_policy_text(text, str(path))


def parse_policy_text(text: str, origin: str) -> Policy:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{origin}: not valid YAML: {one_line(exc)}") from None
    return parse_policy(document, origin)


def parse_policy(document: Any, origin: str) -> Policy:
    """Validate a parsed profile document and compile it."""
    if not isinstance(document, dict):
        raise PolicyError(f"{origin}: expected a mapping with name, version, effective, tiers and rules")
    try:
        spec = ProfileSpec.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(describe(exc, document, origin, " (check its spelling against docs/policy.md)")) from None
    return compile_policy(spec, origin)


def _rule(spec: RuleSpec) -> Rule:
    match = spec.match

    def opt(values: tuple[Any, ...] | None) -> frozenset[Any] | None:
        return None if values is None else frozenset(values)

    window = {"concurrent-tpp": "now", "workload-operations": "workload"}.get(spec.cap.kind)
    if window is None:
        window = "calendar-year" if spec.cap.window == "calendar-year" else "rolling"
    return Rule(
        id=spec.id,
        description=spec.description or spec.id,
        action=spec.action,
        scope=spec.scope,
        metric=spec.cap.metric,
        window=window,
        days=spec.cap.rolling_days or 0,
        cap=spec.cap.amount,
        warn_at=spec.warn_at,
        exemptions=frozenset(spec.exemptions),
        exclude_exempted=spec.exclude_exempted,
        per_cluster=spec.per_cluster,
        hint=spec.hint,
        tiers=opt(match.tiers),
        exclude_tiers=frozenset(match.exclude_tiers),
        jurisdictions=opt(match.jurisdictions),
        exclude_jurisdictions=frozenset(match.exclude_jurisdictions),
        tenants=opt(match.tenants),
        exclude_tenants=frozenset(match.exclude_tenants),
        purposes=opt(match.purposes),
        gpu_classes=opt(match.gpu_classes),
        weights=opt(match.weights),
    )


def compile_policy(spec: ProfileSpec, origin: str) -> Policy:
    strongest = load_catalog().strongest
    if spec.unknown_model_tpp < strongest.tpp:
        raise PolicyError(
            f"{origin}: unknownModelTpp: {spec.unknown_model_tpp:,.0f} is below the strongest catalog part "
            f"({strongest.key}, {strongest.tpp:,.0f} TPP): a GPU the catalog lacks would be under-counted"
        )
    if spec.default_model is not None:
        catalog = load_catalog()
        gpu = catalog.get(spec.default_model)
        if gpu is None:
            raise PolicyError(
                f"{origin}: defaultModel: {spec.default_model!r} is not in the GPU catalog "
                "(see `gpuquota gpus` for the keys)"
            )
        default_model: str | None = gpu.key
    else:
        default_model = None
    tiers = tuple(Tier(t.name, t.description, frozenset(t.jurisdictions)) for t in spec.tiers)
    by_country = {code: t.name for t in tiers for code in t.jurisdictions}
    unknown = spec.unknown_jurisdiction
    return Policy(
        name=spec.name,
        version=spec.version,
        effective=spec.effective,
        description=spec.description,
        default_model=default_model,
        unknown_model_tpp=spec.unknown_model_tpp,
        shared_gpu_fraction=spec.shared_gpu_fraction,
        tiers=tiers,
        default_tier=spec.default_tier,
        unknown_action=Action(unknown.action),
        unknown_message=unknown.message,
        bit_length=spec.operations.bit_length,
        utilisation=spec.operations.utilisation,
        horizon_s=spec.operations.unbounded_runtime.horizon_seconds,
        unbounded_hint=spec.operations.unbounded_runtime.hint,
        overrun_action=spec.overrun.action,
        rules=tuple(_rule(r) for r in spec.rules),
        origin=origin,
        spec=spec,
        countries=country_codes(),
        _tier_by_country=by_country,
    )
