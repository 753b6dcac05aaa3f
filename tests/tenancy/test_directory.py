"""Tenants file validation and namespace → tenant resolution (Namespace labels win over the file)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gpuquota.domain import Exemption
from gpuquota.errors import UserError
from gpuquota.tenancy import (
    JURISDICTION_LABEL,
    TENANT_LABEL,
    TenancyError,
    TenantDirectory,
    load_tenants,
    validate_country,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tenants.yaml"

TENANTS = """
tenants:
  - name: acme
    jurisdiction: jp
    namespaces: [acme-train, acme-dev]
  - name: nordic
    jurisdiction: NO          # unquoted: YAML 1.1 reads false
    namespaces: [nordic]
  - name: initech
    jurisdiction: IN
    namespaces: [initech]
    exemptions:
      - kind: veu
        id: VEU-2025-0042
        expires: 2027-12-31
      - kind: licence
        id: LIC-7
        amount: 10000000
        rules: [tier2-tenant-lpp]
"""


@pytest.fixture
def directory(tmp_path: Path) -> TenantDirectory:
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS)
    return load_tenants(path)


def _refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tenants.yaml"
    path.write_text(text)
    with pytest.raises(TenancyError) as info:
        load_tenants(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message


def test_example_file_loads() -> None:
    directory = load_tenants(EXAMPLE)
    assert directory.known_tenants() == frozenset({"acme", "globex", "initech"})
    initech = directory.get("initech")
    assert initech is not None
    assert initech.exemptions == (Exemption("veu", "VEU-2025-0042", (), None, date(2027, 12, 31)),)


def test_resolve_by_namespace(directory: TenantDirectory) -> None:
    acme = directory.resolve("acme-dev")
    assert acme is not None
    assert (acme.name, acme.jurisdiction, acme.namespaces) == ("acme", "JP", ("acme-train", "acme-dev"))
    nordic = directory.resolve("nordic")
    assert nordic is not None
    assert nordic.jurisdiction == "NO"
    assert directory.resolve("kube-public") is None


def test_exemptions_are_read(directory: TenantDirectory) -> None:
    initech = directory.resolve("initech")
    assert initech is not None
    veu, lic = initech.exemptions
    assert (veu.kind, veu.id, veu.expires, veu.amount) == ("veu", "VEU-2025-0042", date(2027, 12, 31), None)
    assert (lic.kind, lic.amount, lic.rules, lic.expires) == ("licence", 10_000_000, ("tier2-tenant-lpp",), None)


def test_namespace_label_jurisdiction_wins_but_exemptions_stay(directory: TenantDirectory) -> None:
    tenant = directory.resolve("initech", {JURISDICTION_LABEL: "de"})
    assert tenant is not None
    assert (tenant.name, tenant.jurisdiction) == ("initech", "DE")
    assert len(tenant.exemptions) == 2


def test_tenant_label_names_a_file_tenant(directory: TenantDirectory) -> None:
    tenant = directory.resolve("some-other-ns", {TENANT_LABEL: "acme"})
    assert tenant is not None
    assert (tenant.name, tenant.jurisdiction) == ("acme", "JP")


def test_tenant_label_unknown_to_the_file(directory: TenantDirectory) -> None:
    tenant = directory.resolve("lab", {TENANT_LABEL: "newco", JURISDICTION_LABEL: "br"})
    assert tenant is not None
    assert (tenant.name, tenant.jurisdiction, tenant.exemptions) == ("newco", "BR", ())
    assert "newco" not in directory.known_tenants()
    bare = directory.resolve("lab", {TENANT_LABEL: "newco"})
    assert bare is not None
    assert bare.jurisdiction is None


def test_jurisdiction_label_alone_makes_a_namespace_tenant(directory: TenantDirectory) -> None:
    tenant = directory.resolve("research", {JURISDICTION_LABEL: "FR"})
    assert tenant is not None
    assert (tenant.name, tenant.jurisdiction) == ("research", "FR")


def test_invalid_label_code_is_kept_for_decide_to_report(directory: TenantDirectory) -> None:
    tenant = directory.resolve("acme-dev", {JURISDICTION_LABEL: "Narnia"})
    assert tenant is not None
    assert tenant.jurisdiction == "NARNIA"


def test_workload_labels_are_not_an_input(directory: TenantDirectory) -> None:
    # resolve takes the Namespace's labels only; unrelated labels change nothing
    assert directory.resolve("acme-dev", {"app": "x", "team": "y"}) == directory.resolve("acme-dev")


def test_resolve_or_unknown(directory: TenantDirectory) -> None:
    unknown = directory.resolve_or_unknown("stray")
    assert (unknown.name, unknown.jurisdiction) == ("stray", None)
    acme = directory.resolve_or_unknown("acme-train")
    assert acme.name == "acme"


def test_empty_file_is_an_empty_directory(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tenants: []\n")
    assert load_tenants(path).known_tenants() == frozenset()
    path.write_text("tenants:\n")
    assert load_tenants(path).tenants == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tenants:\n  - name: a\n    jurisdiction: XX\n", "tenants[0] (a).jurisdiction: 'XX' is not an ISO 3166-1"),
        ("tenants:\n  - name: a\n    jurisdiction: UK\n", "the United Kingdom is GB"),
        ("tenants:\n  - name: a\n", "tenants[0] (a).jurisdiction: required field is missing"),
        ("tenants:\n  - name: a\n    jurisdiction: JP\n    colour: red\n", "tenants[0] (a).colour: unknown field"),
        (
            "tenants:\n  - {name: a, jurisdiction: JP}\n  - {name: a, jurisdiction: FR}\n",
            "tenants[1].name: duplicate tenant 'a'",
        ),
        (
            "tenants:\n  - {name: a, jurisdiction: JP, namespaces: [x]}\n"
            "  - {name: b, jurisdiction: FR, namespaces: [x]}\n",
            "namespace 'x' already belongs to tenant 'a'",
        ),
        (
            "tenants:\n  - {name: a, jurisdiction: JP, exemptions: [{kind: licence, amount: -5}]}\n",
            "tenants[0] (a).exemptions[0].amount",
        ),
        (
            "tenants:\n  - {name: a, jurisdiction: JP, exemptions: [{kind: veu, expires: soon}]}\n",
            "tenants[0] (a).exemptions[0].expires",
        ),
        ("tenants:\n  - {name: 'has space', jurisdiction: JP}\n", "tenants[0] (has space).name"),
        ("people: []\n", "expected a mapping with a 'tenants' list"),
        ("tenants: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_are_refused_with_the_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _refused(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TenancyError, match="cannot read the tenants file"):
        load_tenants(tmp_path / "nope.yaml")


def test_tenancy_error_is_a_user_error() -> None:
    assert issubclass(TenancyError, UserError)


@pytest.mark.parametrize(("code", "expected"), [("jp", "JP"), (" De ", "DE"), ("GB", "GB")])
def test_validate_country(code: str, expected: str) -> None:
    assert validate_country(code) == expected


@pytest.mark.parametrize("code", ["UK", "XX", "", "JPN", "12"])
def test_validate_country_refuses(code: str) -> None:
    with pytest.raises(UserError, match="ISO 3166-1 alpha-2"):
        validate_country(code)
