"""Resolution invariants over arbitrary label sets: labels an admin sets win, nothing raises, and a namespace
resolves the same way every time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpuquota.domain import Tenant
from gpuquota.tenancy import JURISDICTION_LABEL, TENANT_LABEL, TenantDirectory

DIRECTORY = TenantDirectory(
    [
        Tenant("acme", "JP", namespaces=("acme-train", "acme-dev")),
        Tenant("globex", "BR", namespaces=("globex-ml",)),
    ]
)
namespaces = st.sampled_from(["acme-train", "acme-dev", "globex-ml", "stray", "kube-public"])
label_values = st.one_of(st.none(), st.sampled_from(["", "acme", "globex", "newco", "de", "US", "Narnia", " fr "]))


@given(
    namespace=namespaces,
    tenant_label=label_values,
    jurisdiction_label=label_values,
    other=st.dictionaries(st.sampled_from(["app", "team", "gpuquota.io/other"]), st.text(max_size=8), max_size=3),
)
def test_labels_win_and_resolution_is_stable(
    *, namespace: str, tenant_label: str | None, jurisdiction_label: str | None, other: dict[str, str]
) -> None:
    labels = dict(other)
    if tenant_label is not None:
        labels[TENANT_LABEL] = tenant_label
    if jurisdiction_label is not None:
        labels[JURISDICTION_LABEL] = jurisdiction_label
    tenant = DIRECTORY.resolve(namespace, labels)
    assert tenant == DIRECTORY.resolve(namespace, labels)
    named = (tenant_label or "").strip()
    code = (jurisdiction_label or "").strip().upper()
    if named:
        assert tenant is not None
        assert tenant.name == named
    if code:
        assert tenant is not None
        assert tenant.jurisdiction == code
    if not named and not code:
        assert tenant == DIRECTORY.resolve(namespace)  # unrelated labels change nothing
    unknown = DIRECTORY.resolve_or_unknown(namespace, labels)
    assert unknown == tenant or (tenant is None and unknown.jurisdiction is None and unknown.name == namespace)
