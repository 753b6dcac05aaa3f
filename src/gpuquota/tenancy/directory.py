"""Who a namespace belongs to: the tenants file, overridden by labels a cluster admin puts on the Namespace.

Jurisdiction is never read from the workload object (the tenant controls those labels), only from the Namespace
(admins) or the tenants file (the operator). The directory is built once per file load and answers in O(1).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpuquota.domain import Exemption, Tenant
from gpuquota.errors import UserError
from gpuquota.tenancy.countries import validate_country, yaml_country
from gpuquota.tenancy.validation import describe, one_line

TENANT_LABEL = "gpuquota.io/tenant"
JURISDICTION_LABEL = "gpuquota.io/jurisdiction"


class TenancyError(UserError):
    """The tenants file is missing or invalid; the message names the file, the field path and the problem."""


Country = Annotated[str, BeforeValidator(yaml_country)]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExemptionSpec(_Spec):
    kind: str = Field(min_length=1)
    id: str = ""
    rules: tuple[str, ...] = ()
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    expires: date | None = None


class TenantSpec(_Spec):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
    jurisdiction: Country
    namespaces: tuple[str, ...] = ()
    exemptions: tuple[ExemptionSpec, ...] = ()

    @field_validator("jurisdiction")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            return validate_country(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None


class TenantsFile(_Spec):
    tenants: tuple[TenantSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> TenantsFile:
        names: dict[str, int] = {}
        owners: dict[str, str] = {}
        for index, tenant in enumerate(self.tenants):
            if tenant.name in names:
                raise ValueError(
                    f"tenants[{index}].name: duplicate tenant {tenant.name!r} (also tenants[{names[tenant.name]}])"
                )
            names[tenant.name] = index
            for ns in tenant.namespaces:
                if ns in owners:
                    raise ValueError(
                        f"tenants[{index}].namespaces: namespace {ns!r} already belongs to tenant {owners[ns]!r}"
                    )
                owners[ns] = tenant.name
        return self


def _tenant(spec: TenantSpec) -> Tenant:
    return Tenant(
        name=spec.name,
        jurisdiction=spec.jurisdiction,
        exemptions=tuple(Exemption(e.kind, e.id, e.rules, e.amount, e.expires) for e in spec.exemptions),
        namespaces=spec.namespaces,
    )


class TenantDirectory:
    """Namespace → Tenant. Labels on the Namespace win over the file (see ``resolve``)."""

    def __init__(self, tenants: list[Tenant] | tuple[Tenant, ...] = ()) -> None:
        self._by_name = {t.name: t for t in tenants}
        self._by_namespace = {ns: t for t in tenants for ns in t.namespaces}
        self._known = frozenset(self._by_name)

    @property
    def tenants(self) -> tuple[Tenant, ...]:
        return tuple(self._by_name.values())

    def known_tenants(self) -> frozenset[str]:
        """Tenant names from the file: the only tenant values metric labels take (anything else is ``other``)."""
        return self._known

    def get(self, name: str) -> Tenant | None:
        return self._by_name.get(name)

    def resolve(self, namespace: str, namespace_labels: Mapping[str, str] | None = None) -> Tenant | None:
        """The tenant owning ``namespace``, or ``None`` when neither the file nor the labels name one.

        - Label ``gpuquota.io/tenant`` names the tenant; a name the file knows keeps its exemptions and file
          jurisdiction, a name it does not know becomes a tenant with no exemptions.
        - Label ``gpuquota.io/jurisdiction`` overrides the jurisdiction (upper-cased; an invalid code is kept as
          written so that ``decide()`` reports it as not a country code rather than silently dropping it).
        - A namespace with only a jurisdiction label and no file entry becomes a tenant named after the namespace.
        """
        labels = namespace_labels or {}
        label_tenant = labels.get(TENANT_LABEL, "").strip()
        label_jurisdiction = labels.get(JURISDICTION_LABEL, "").strip().upper() or None
        if label_tenant:
            tenant = self._by_name.get(label_tenant)
            if tenant is None:
                return Tenant(name=label_tenant, jurisdiction=label_jurisdiction, namespaces=(namespace,))
        else:
            tenant = self._by_namespace.get(namespace)
            if tenant is None:
                if label_jurisdiction is None:
                    return None
                return Tenant(name=namespace, jurisdiction=label_jurisdiction, namespaces=(namespace,))
        if label_jurisdiction is not None and label_jurisdiction != tenant.jurisdiction:
            return Tenant(tenant.name, label_jurisdiction, tenant.exemptions, tenant.namespaces)
        return tenant

    def resolve_or_unknown(self, namespace: str, namespace_labels: Mapping[str, str] | None = None) -> Tenant:
        """``resolve``, or a tenant named after the namespace with no jurisdiction: ``decide()`` then applies the
        profile's ``unknownJurisdiction`` action (deny GPU workloads, by default)."""
        return self.resolve(namespace, namespace_labels) or Tenant(namespace, None, namespaces=(namespace,))


def parse_tenants(document: Any, origin: str) -> TenantDirectory:
    if not isinstance(document, dict) or "tenants" not in document:
        raise TenancyError(f"{origin}: expected a mapping with a 'tenants' list")
    if document["tenants"] is None:
        document = {**document, "tenants": []}
    try:
        spec = TenantsFile.model_validate(document)
    except ValidationError as exc:
        raise TenancyError(describe(exc, document, origin)) from None
    return TenantDirectory([_tenant(t) for t in spec.tenants])


def load_tenants(path: str | Path) -> TenantDirectory:
    """Read and validate a tenants file (format in DESIGN.md; exemptions in docs/policy.md)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise TenancyError(f"{path}: cannot read the tenants file: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TenancyError(f"{path}: not valid YAML: {one_line(exc)}") from None
    return parse_tenants(document, str(path))
