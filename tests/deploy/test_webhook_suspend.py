"""The chart sends every suspension change of a GPU workload to the webhook (docs/webhook.md, "Suspended
workloads"): a suspended create, suspending, un-suspending (by the tenant or by Kueue, which also writes the flavour's
node selector), for every kind whose module names a suspend field — evaluated with a real CEL interpreter."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gpuquota.workloads.registry import KINDS
from gpuquota.workloads.suspension import KUEUE_QUEUE_LABEL, suspended
from tests.deploy import admission_cel as ac
from tests.deploy.chart import find, render

SUSPENDABLE = {k.key: k.suspend for k in KINDS if k.suspend is not None}


def _workloads_hook() -> dict[str, Any]:
    vwc = find(render("defaults"), "ValidatingWebhookConfiguration")
    hook: dict[str, Any] = next(h for h in vwc["webhooks"] if h["name"] == "workloads.gpuquota.io")
    return hook


def _with_suspend(obj: dict[str, Any], path: tuple[str, ...], value: bool) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out
    for step in path[:-1]:
        node = node.setdefault(step, {})
    node[path[-1]] = value
    return out


def test_the_suspendable_kinds_are_the_expected_ones() -> None:
    assert set(SUSPENDABLE) == {
        ("batch", "Job"), ("batch", "CronJob"), ("jobset.x-k8s.io", "JobSet"), ("trainer.kubeflow.org", "TrainJob"),
        ("ray.io", "RayJob"), ("ray.io", "RayCluster"),
        *(("kubeflow.org", k) for k in ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob")),
    }


@pytest.mark.parametrize("kind", sorted(SUSPENDABLE))
def test_suspension_changes_of_gpu_workloads_reach_the_webhook(kind: tuple[str, str]) -> None:
    hook = _workloads_hook()
    path = SUSPENDABLE[kind]
    assert path is not None
    base = ac.workload(kind, [ac.GPU_SPEC, ac.GPU_SPEC])
    held = _with_suspend(base, path, True)
    running = _with_suspend(base, path, False)
    assert suspended(held, kind)
    assert not suspended(running, kind)
    assert ac.sent(hook, ac.request(kind, "CREATE", held))  # judged alone, reserves nothing
    assert ac.sent(hook, ac.request(kind, "UPDATE", running, held))  # un-suspended: charged now
    assert ac.sent(hook, ac.request(kind, "UPDATE", held, running))  # suspended: passes, releases nothing
    queued = copy.deepcopy(held)
    queued["metadata"].setdefault("labels", {})[KUEUE_QUEUE_LABEL] = "main"
    assert ac.sent(hook, ac.request(kind, "CREATE", queued))
    admitted = _with_suspend(queued, path, False)
    assert ac.sent(hook, ac.request(kind, "UPDATE", admitted, queued))  # Kueue's un-suspend: finds the reservation
    # a status-only change of a suspended workload (Kueue's conditions, the controller's) is not sent
    touched = copy.deepcopy(queued) | {"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}
    assert not ac.sent(hook, ac.request(kind, "UPDATE", touched, queued))


def test_kueues_un_suspend_with_the_flavours_node_selector_reaches_the_webhook() -> None:
    kind = ("batch", "Job")
    queued = _with_suspend(ac.workload(kind, [ac.GPU_SPEC]), ("spec", "suspend"), True)
    queued["metadata"]["labels"] = {KUEUE_QUEUE_LABEL: "main"}
    admitted = _with_suspend(queued, ("spec", "suspend"), False)
    admitted["spec"]["template"]["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert ac.sent(_workloads_hook(), ac.request(kind, "UPDATE", admitted, queued))
