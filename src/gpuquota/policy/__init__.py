"""Policy profiles and the pure decision core.

A profile (a YAML data file: tiers of jurisdictions, rules with caps, scopes, actions and exemptions) is
validated and compiled by ``load_policy``; ``decide`` judges one demand for one tenant against the usage already
counted, without I/O. The format is documented in docs/policy.md.
"""

from gpuquota.policy.decide import (
    MALFORMED_RULE,
    UNKNOWN_JURISDICTION_RULE,
    UNKNOWN_SUBJECT,
    WORKLOAD_WINDOW,
    decide,
    usage_keys,
)
from gpuquota.policy.errors import PolicyError
from gpuquota.policy.loader import bundled_profiles, compile_policy, load_policy, parse_policy, parse_policy_text
from gpuquota.policy.model import Policy, Rule, Tier
from gpuquota.policy.schema import ProfileSpec

__all__ = [
    "MALFORMED_RULE",
    "UNKNOWN_JURISDICTION_RULE",
    "UNKNOWN_SUBJECT",
    "WORKLOAD_WINDOW",
    "Policy",
    "PolicyError",
    "ProfileSpec",
    "Rule",
    "Tier",
    "bundled_profiles",
    "compile_policy",
    "decide",
    "load_policy",
    "parse_policy",
    "parse_policy_text",
    "usage_keys",
]
