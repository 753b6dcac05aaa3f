"""The ValidatingAdmissionPolicy that narrows the agent's RBAC (patch any Node) to what the agent does: its own
Node, gpuquota.io/ labels and annotations only. Evaluated with a CEL interpreter on realistic Node updates."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from celpy import celtypes
from celpy.adapter import json_to_cel

from gpuquota.inventory.node_keys import ANNOTATION_INVENTORY, LABEL_CLASS, LABEL_COUNT, LABEL_MODEL
from tests.deploy import admission_cel as ac
from tests.deploy.chart import find, pod_specs, render
from tests.deploy.tools import NAMESPACE

NODE_NAME_KEY = "authentication.kubernetes.io/node-name"


def _policy() -> dict[str, Any]:
    return find(render("defaults"), "ValidatingAdmissionPolicy", "-agent-own-node")


def _agent_user() -> str:
    agent = next(pod for name, pod in pod_specs(render("defaults")) if name.endswith("-agent"))
    return f"system:serviceaccount:{NAMESPACE}:{agent['serviceAccountName']}"


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    return ac.program(expression).evaluate(activation)


def _verdict(new: dict[str, Any], old: dict[str, Any], user: str | None = None,
             node_name: str | None = "gpu-a100-7") -> tuple[bool, list[str]]:
    """(whether the policy applies, messages of the failed validations)."""
    policy = _policy()["spec"]
    user_info: dict[str, Any] = {"username": user or _agent_user(), "extra": {}}
    if node_name is not None:
        user_info["extra"][NODE_NAME_KEY] = [node_name]
    activation = {"request": json_to_cel({"operation": "UPDATE", "userInfo": user_info}),
                  "object": json_to_cel(new), "oldObject": json_to_cel(old)}
    if not all(bool(_evaluate(c["expression"], activation)) for c in policy["matchConditions"]):
        return False, []
    variables = celtypes.MapType({})
    for variable in policy["variables"]:
        value = _evaluate(variable["expression"], activation | {"variables": variables})
        variables[celtypes.StringType(variable["name"])] = value
    activation["variables"] = variables
    failed = [v["message"] for v in policy["validations"] if not bool(_evaluate(v["expression"], activation))]
    return True, failed


NODE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Node",
    "metadata": {"name": "gpu-a100-7", "labels": {"kubernetes.io/hostname": "gpu-a100-7",
                                                  "nvidia.com/gpu.present": "true",
                                                  "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                 "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
    "spec": {"podCIDR": "10.244.7.0/24", "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
}


def _published(node: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(node)
    new["metadata"]["labels"] |= {LABEL_MODEL: "A100-SXM4-80GB", LABEL_COUNT: "8", LABEL_CLASS: "3A090.a"}
    new["metadata"]["annotations"][ANNOTATION_INVENTORY] = '{"gpus": 8, "tpp": 4992}'
    return new


def test_policy_is_bound_to_deny() -> None:
    binding = find(render("defaults"), "ValidatingAdmissionPolicyBinding", "-agent-own-node")
    assert binding["spec"]["policyName"] == _policy()["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert _policy()["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["nodes"]


def test_the_agent_publishing_its_inventory_is_allowed() -> None:
    applies, failed = _verdict(_published(NODE), NODE)
    assert applies
    assert failed == []
    republished = _published(NODE)
    republished["metadata"]["labels"][LABEL_COUNT] = "7"  # a GPU fell off the bus
    assert _verdict(republished, _published(NODE)) == (True, [])


def test_another_node_is_refused() -> None:
    other = copy.deepcopy(NODE)
    other["metadata"]["name"] = "gpu-h100-1"
    applies, failed = _verdict(_published(other), other)
    assert applies
    assert failed == ["the gpuquota node agent may only change the Node it runs on"]


def test_without_node_binding_in_the_token_only_the_keys_are_checked() -> None:
    assert _verdict(_published(NODE), NODE, node_name=None) == (True, [])


@pytest.mark.parametrize(("change", "message"), [
    (lambda n: n["metadata"]["labels"].update({"node-role.kubernetes.io/control-plane": ""}), "labels"),
    (lambda n: n["metadata"]["labels"].update({"nvidia.com/gpu.product": "NVIDIA-H100"}), "labels"),
    (lambda n: n["metadata"]["labels"].pop("kubernetes.io/hostname"), "labels"),
    (lambda n: n["metadata"]["annotations"].pop("node.alpha.kubernetes.io/ttl"), "annotations"),
    (lambda n: n["spec"].update({"taints": []}), "spec"),
    (lambda n: n["spec"].update({"unschedulable": True}), "spec"),
])
def test_anything_beyond_gpuquota_keys_is_refused(change: Any, message: str) -> None:
    new = _published(NODE)
    change(new)
    applies, failed = _verdict(new, NODE)
    assert applies
    assert len(failed) == 1
    assert message in failed[0]


def test_other_users_are_not_concerned() -> None:
    new = copy.deepcopy(NODE)
    new["spec"]["unschedulable"] = True  # kubectl cordon by an admin
    assert _verdict(new, NODE, user="kubernetes-admin") == (False, [])


def test_it_can_be_turned_off() -> None:
    assert not [d for d in render("agent-off") if d["kind"].startswith("ValidatingAdmissionPolicy")]
