"""Suspended Jobs through the real API server (docs/webhook.md, "Suspended workloads"): created suspended, a Job
reserves nothing (the Job controller makes no pods either); un-suspending it (`kubectl patch`, an UPDATE of
spec.suspend that the chart's conditions route to the webhook) is judged like a scale-up from zero — refused by
kubectl with the message at the cap, charged within it — and a Kueue queue-name label (no Kueue here, so no
AdmissionCheck reservation) changes nothing."""

from __future__ import annotations

from typing import Any

from tests.e2e.install import Gpuquota
from tests.e2e.manifests import job

UNSUSPEND = ("--type=merge", "-p", '{"spec":{"suspend":false}}')


def _queued(name: str, gpus_per_pod: int) -> dict[str, Any]:
    obj = job(name, gpus_per_pod, suspend=True)
    obj["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "main"}
    return obj


def test_a_suspended_job_holds_nothing_and_its_un_suspend_is_judged(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-suspend", "sleeper", "BR")  # tier-2: 16 H100s at most
    ns = tenant.namespace

    created = tenant.apply(job("held", 8, suspend=True))
    assert created.ok, created.output
    assert gpuquota.reservations(ns) == []
    line = gpuquota.audited(ns, "held")
    assert line["allowed"] is True
    assert "suspended: nothing is reserved" in line["message"], line

    filler = tenant.apply(job("filler", 4, parallelism=3))  # 12 of 16 GPUs held
    assert filler.ok, filler.output
    assert tenant.apply(job("small", 4, suspend=True)).ok
    assert tenant.apply(_queued("labelled", 8)).ok
    assert sorted(r.workload.name for r in gpuquota.reservations(ns)) == ["filler"]

    refused = tenant.kubectl("patch", "job", "held", *UNSUSPEND)  # 12 + 8 > 16
    assert not refused.ok
    assert 'admission webhook "workloads.gpuquota.io" denied the request' in refused.stderr, refused.output
    assert f"Job {ns}/held denied for tenant sleeper" in refused.stderr, refused.output
    stored = tenant.kubectl("get", "job", "held", "-o", "jsonpath={.spec.suspend}")
    assert stored.stdout.strip() == "true", stored.output  # the refused patch changed nothing

    bypass = tenant.kubectl("patch", "job", "labelled", *UNSUSPEND)  # the label is no way around the cap
    assert not bypass.ok
    assert "tenant-cap" in bypass.stderr, bypass.output

    allowed = tenant.kubectl("patch", "job", "small", *UNSUSPEND)  # 12 + 4 = 16: fits
    assert allowed.ok, allowed.output
    held = {r.workload.name: r.gpus for r in gpuquota.reservations(ns)}
    assert held == {"filler": 12, "small": 4}
