"""Profile validation: every invalid profile is refused with the file, the field path and the problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import gpuquota.policy.profiles as profiles_pkg
from gpuquota.domain import Action, Metric, Scope
from gpuquota.policy import PolicyError, bundled_profiles, load_policy, parse_policy, parse_policy_text
from tests.policy.builders import BASE_PROFILE, profile, rule


def _refused(document: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as info:
        parse_policy(document, "my-profile.yaml")
    message = str(info.value)
    assert message.startswith("my-profile.yaml: ")
    return message


def _with(**changes: Any) -> dict[str, Any]:
    return {**BASE_PROFILE, **changes}


def test_bundled_profiles_are_listed_and_load() -> None:
    names = bundled_profiles()
    assert {"ai-diffusion-2025", "unrestricted"} <= set(names)
    for name in names:
        policy = load_policy(name)
        assert policy.name == name
        assert policy.origin == f"bundled profile {name}"


def test_ai_diffusion_profile_figures() -> None:
    policy = load_policy("ai-diffusion-2025")
    rules = {r.id: r for r in policy.rules}
    assert rules["tier2-tenant-lpp"].cap == 26_900_000
    assert rules["tier2-tenant-lpp"].scope is Scope.TENANT
    assert rules["tier2-tenant-lpp"].warn_at == 0.8
    assert rules["tier2-country-allocation"].cap == 790_000_000
    assert rules["tier2-country-allocation"].scope is Scope.JURISDICTION
    assert rules["tier3-no-3a090"].cap == 0
    assert rules["closed-weights-1e26"].cap == 1e26
    assert rules["closed-weights-1e26"].per_workload
    assert rules["closed-weights-1e26"].metric is Metric.OPERATIONS
    assert "veu" in rules["tier2-tenant-lpp"].exemptions
    assert "veu" in rules["tier2-country-allocation"].exemptions
    assert all(r.action is Action.DENY for r in policy.rules)
    assert policy.unknown_action is Action.DENY
    assert "gpuquota.io/jurisdiction" in policy.unknown_message
    assert policy.bit_length == 16
    assert policy.utilisation == 1.0
    assert policy.horizon_s == 365 * 86400  # a year (2025.3)


def test_every_number_in_bundled_profiles_has_a_source_comment() -> None:
    root = Path(profiles_pkg.__file__).parent
    numeric = re.compile(r"^\s*-?\s*[A-Za-z]+:\s*-?\d[\d_.]*(e[+-]?\d+)?\s*(#.*)?$")
    checked = 0
    for path in root.glob("*.yaml"):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if numeric.match(line):
                checked += 1
                assert "#" in line, f"{path.name}:{lineno}: number without a source comment: {line.strip()}"
    assert checked >= 12


@pytest.mark.parametrize(
    ("tiers", "expected"),
    [
        (["US", "JP"], None),
        (["US", "XX"], "'XX' is not an ISO 3166-1 alpha-2 country code"),
        (["UK"], "the United Kingdom is GB"),
    ],
)
def test_tier_country_codes_are_validated(tiers: list[str], expected: str | None) -> None:
    document = _with(tiers=[{"name": "gold", "jurisdictions": tiers}, {"name": "rest"}])
    if expected is None:
        assert parse_policy(document, "x.yaml").tier_of("JP") == "gold"
    else:
        message = _refused(document)
        assert "tiers[0] (gold).jurisdictions[1]" in message or "tiers[0] (gold).jurisdictions[0]" in message
        assert expected in message


def test_lower_case_codes_are_accepted_and_norway_survives_yaml() -> None:
    text = """
name: nordic
version: "1"
effective: 2026-01-01
tiers:
  - name: gold
    jurisdictions: [us, NO]    # unquoted NO is false in YAML 1.1
  - name: rest
defaultTier: rest
"""
    assert yaml.safe_load(text)["tiers"][0]["jurisdictions"] == ["us", False]
    policy = parse_policy_text(text, "nordic.yaml")
    assert policy.tier_of("US") == "gold"
    assert policy.tier_of("NO") == "gold"
    assert policy.tier_of("SE") == "rest"


def test_negative_cap_is_refused_with_its_path() -> None:
    message = _refused(_with(rules=[rule("tenant-cap", "concurrent-tpp", -5)]))
    assert "rules[0] (tenant-cap).cap.amount" in message
    assert "-5" in message


def test_unknown_scope_is_refused() -> None:
    message = _refused(_with(rules=[rule("tenant-cap", "concurrent-tpp", 5, scope="galaxy")]))
    assert "rules[0] (tenant-cap).scope" in message
    assert "galaxy" in message


def test_duplicate_rule_id_is_refused() -> None:
    message = _refused(_with(rules=[rule("cap", "concurrent-tpp", 5), rule("cap", "concurrent-tpp", 6)]))
    assert "rules[1].id: duplicate rule id 'cap' (also rules[0])" in message


def test_rule_naming_an_unknown_tier_is_refused() -> None:
    message = _refused(_with(rules=[rule("cap", "concurrent-tpp", 5, match={"excludeTiers": ["tier-9"]})]))
    assert "rules[0] (cap).match.excludeTiers: unknown tier 'tier-9'" in message


def test_country_in_two_tiers_is_refused() -> None:
    message = _refused(_with(tiers=[{"name": "a", "jurisdictions": ["FR"]}, {"name": "rest", "jurisdictions": ["FR"]}]))
    assert "tiers[1].jurisdictions: FR is already in tier 'a'" in message


def test_default_tier_must_exist() -> None:
    assert "defaultTier: 'nowhere' is not one of the tiers" in _refused(_with(defaultTier="nowhere"))


def test_misspelt_field_is_an_error_not_a_silent_match_all() -> None:
    message = _refused(_with(rules=[rule("cap", "concurrent-tpp", 5, match={"excludeTier": ["gold"]})]))
    assert "rules[0] (cap).match.excludeTier: unknown field" in message


def test_missing_fields_are_named() -> None:
    document = dict(BASE_PROFILE)
    del document["version"]
    assert "version: required field is missing" in _refused(document)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ({"kind": "operations", "amount": 1}, "needs a window"),
        ({"kind": "operations", "amount": 1, "window": "fortnight"}, "expected calendar-year or rolling-<N>d"),
        ({"kind": "operations", "amount": 1, "window": "rolling-0d"}, "1 ≤ N ≤ 3660"),
        ({"kind": "concurrent-tpp", "amount": 1, "window": "calendar-year"}, "takes no window"),
        ({"kind": "watts", "amount": 1}, "cap.kind"),
        ({"kind": "concurrent-tpp", "amount": "lots"}, "cap.amount"),
        ({"kind": "concurrent-tpp", "amount": ".inf"}, "cap.amount"),
    ],
)
def test_cap_shapes(cap: dict[str, Any], expected: str) -> None:
    message = _refused(_with(rules=[{"id": "r", "cap": cap}]))
    assert expected in message


def test_scientific_amount_written_without_a_dot_is_a_number() -> None:
    text = yaml.safe_dump(_with(rules=[{"id": "big", "cap": {"kind": "workload-operations", "amount": "PLACEHOLDER"}}]))
    policy = parse_policy_text(text.replace("PLACEHOLDER", "1e26"), "x.yaml")
    assert policy.rules[0].cap == 1e26


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"operations": {"bitLength": 12}}, "operations.bitLength"),
        ({"operations": {"utilisation": 0}}, "operations.utilisation"),
        ({"operations": {"unboundedRuntime": {"assume": "forever"}}}, "operations.unboundedRuntime.horizon"),
        ({"operations": {"unboundedRuntime": {"horizon": "0h"}}}, "a horizon is a positive duration"),
        ({"operations": {"unboundedRuntime": {"horizon": "1h", "assume": "2h"}}}, "horizon and assume are the same"),
        ({"sharedGpuFraction": 0}, "sharedGpuFraction"),
        ({"defaultModel": "Voodoo-5"}, "defaultModel: 'Voodoo-5' is not in the GPU catalog"),
        ({"unknownModelTpp": 0}, "unknownModelTpp"),
        ({"unknownModelTpp": 50_000}, "unknownModelTpp: 50,000 is below the strongest catalog part (MI355X"),
        ({"schema": 2}, "schema 2 is not supported"),
        ({"name": "Bad Name"}, "name"),
        ({"effective": "someday"}, "effective"),
        ({"unknownJurisdiction": {"action": "shrug"}}, "unknownJurisdiction.action"),
    ],
)
def test_profile_level_errors(changes: dict[str, Any], expected: str) -> None:
    assert expected in _refused(_with(**changes))


def test_rule_id_and_warn_threshold_are_checked() -> None:
    assert "rule ids are lower-case" in _refused(_with(rules=[rule("Bad_ID", "concurrent-tpp", 1)]))
    assert "rules[0] (cap).warnAt" in _refused(_with(rules=[rule("cap", "concurrent-tpp", 1, warnAt=1.5)]))


def test_version_written_as_a_number_stays_text() -> None:
    text = yaml.safe_dump(_with()).replace("version: '1'", "version: 2025.10")
    assert parse_policy_text(text, "x.yaml").version == "2025.1"  # YAML reads 2025.10 as a float: quote it


@pytest.mark.parametrize("spelling", ["horizon", "assume"])
def test_unbounded_runtime_is_judged_over_a_horizon(spelling: str) -> None:
    policy = profile(operations={"unboundedRuntime": {spelling: "30d"}})
    assert policy.horizon_s == 30 * 86400
    assert profile(operations={"unboundedRuntime": {spelling: "infinite"}}).horizon_s is None


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such profile file, and not a bundled profile"):
        load_policy(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml: not valid YAML"):
        load_policy(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(PolicyError, match=r"list\.yaml: expected a mapping"):
        load_policy(str(listy))


def test_profile_file_round_trips_through_load_policy(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_with(rules=[rule("cap", "concurrent-tpp", 100, scope="cluster", action="warn")])))
    policy = load_policy(str(path))
    assert policy.origin == str(path)
    assert policy.rules[0].scope is Scope.CLUSTER
    assert policy.rules[0].action is Action.WARN
