"""The webhook's ClusterRole lets it read what an LWS pod's owner chain is made of (gpuquota.admission.lws): the
StatefulSet a pod names and the leader pod a worker StatefulSet names — get only, no list/watch."""

from __future__ import annotations

from typing import Any

import pytest

from gpuquota.admission.lws import pod_path, statefulset_path
from tests.deploy.chart import CASE_NAMES, find, render


def _grants(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    """The verbs any rule grants on ``group``/``resource``."""
    return {str(verb) for rule in rules if group in (rule.get("apiGroups") or [])
            and resource in (rule.get("resources") or []) for verb in rule.get("verbs") or []}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_the_webhook_may_get_statefulsets_and_pods(name: str) -> None:
    role = find(render(name), "ClusterRole", "-webhook")
    rules = role["rules"]
    # the paths the webhook reads: /apis/apps/v1/…/statefulsets/<name> and /api/v1/…/pods/<name>
    assert statefulset_path("ns", "x").startswith("/apis/apps/v1/")
    assert pod_path("ns", "x").startswith("/api/v1/")
    assert _grants(rules, "apps", "statefulsets") == {"get"}
    assert _grants(rules, "", "pods") == {"get"}
