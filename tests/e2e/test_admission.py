"""A tenant meets gpuquota through a real API server: the chart's webhook configuration (its CEL matchConditions
included) routes the tenant's own requests (``kubectl --as``, so ``userInfo`` is real) to the local webhook, and
kubectl shows the answer — allowed, allowed with ``Warning:``, or denied with the message."""

from __future__ import annotations

from tests.cluster import wait_until
from tests.e2e.install import NAMESPACE, RELEASE, WEBHOOK_SA, Gpuquota
from tests.e2e.manifests import cronjob, job, pod, pytorchjob

# TEST_POLICY: a tier-2 tenant holds at most 16 H100 SXM (the profile's default model: no node says otherwise),
# warned from 75 % (12 GPUs).


def test_chart_objects_are_served_as_rendered(gpuquota: Gpuquota) -> None:
    cluster = gpuquota.cluster
    vwc = cluster.get("validatingwebhookconfiguration", f"{RELEASE}-gpuquota")
    assert vwc is not None
    hooks = {hook["name"]: hook for hook in vwc["webhooks"]}
    assert set(hooks) == {"workloads.gpuquota.io", "pods.gpuquota.io", "releases.gpuquota.io"}
    for hook in hooks.values():
        assert hook["clientConfig"]["url"] == f"{gpuquota.webhook.base_url}/validate"
        assert hook["matchConditions"], "the API server kept the CEL conditions (it compiled them)"
    account = f"system:serviceaccount:{NAMESPACE}:{WEBHOOK_SA}"
    can = cluster.kubectl("auth", "can-i", "list", "namespaces", f"--as={account}", check=False)
    assert can.stdout.strip() == "yes", can.output
    cannot = cluster.kubectl("auth", "can-i", "delete", "pods", "-A", f"--as={account}", check=False)
    assert cannot.stdout.strip() == "no", cannot.output


def test_tenant_is_allowed_warned_and_denied_dry_run_reserves_nothing_and_delete_frees_when_the_gpus_go(
    gpuquota: Gpuquota,
) -> None:
    tenant = gpuquota.tenant("e2e-globex", "globex", "BR")
    ns = tenant.namespace

    first = tenant.apply(job("train-a", 4))
    assert first.ok, first.output
    assert first.warnings == []
    assert [r.workload.name for r in gpuquota.reservations(ns)] == ["train-a"]

    dry = tenant.apply(job("train-dry", 4), "--dry-run=server")
    assert dry.ok, dry.output
    assert [r.workload.name for r in gpuquota.reservations(ns)] == ["train-a"]  # a dry run reserves nothing

    warned = tenant.apply(job("train-b", 4, parallelism=2))  # 12 of 16 GPUs: the warning threshold
    assert warned.ok, warned.output
    assert any("tenant-cap" in w for w in warned.warnings), warned.output

    denied = tenant.apply(job("train-c", 8))  # 20 of 16
    assert not denied.ok
    assert 'admission webhook "workloads.gpuquota.io" denied the request' in denied.stderr, denied.output
    assert f"Job {ns}/train-c denied for tenant globex" in denied.stderr, denied.output
    assert tenant.kubectl("get", "job", "train-c").returncode != 0  # nothing was created
    assert sorted(r.workload.name for r in gpuquota.reservations(ns)) == ["train-a", "train-b"]

    # userInfo is the tenant's own: the decision was recorded under the impersonated user.
    refused = gpuquota.audited(ns, "train-c")
    assert (refused["user"], refused["allowed"]) == (tenant.user, False), refused

    deleted = tenant.kubectl("delete", "job", "train-a", "--wait=false")
    assert deleted.ok, deleted.output
    # The DELETE frees nothing by itself: train-a holds its GPUs (releasing) until the reconciler sees its pods gone.
    held = {r.workload.name: r.releasing for r in gpuquota.reservations(ns)}
    assert held == {"train-a": True, "train-b": False}
    assert not tenant.apply(job("train-c", 8)).ok  # still 12 of 16 held

    def released() -> bool:
        gpuquota.reconcile_once()
        return "train-a" not in {r.workload.name for r in gpuquota.reservations(ns)}

    wait_until(released, what="the reconciler to release train-a once the garbage collector removed its pods")
    now_fits = tenant.apply(job("train-c", 8))  # 4 freed: 16 of 16
    assert now_fits.ok, now_fits.output


def test_pods_without_gpus_never_reach_the_webhook(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-cpu", "cpuonly", "BR")
    before = gpuquota.reviews("Pod")
    created = tenant.apply(pod("cpu-only"))
    assert created.ok, created.output
    assert gpuquota.reviews("Pod") == before  # the matchConditions kept it from the webhook
    gpu = tenant.apply(pod("one-gpu", gpus=1))
    assert gpu.ok, gpu.output
    assert gpuquota.reviews("Pod") == before + 1
    assert [r.workload.name for r in gpuquota.reservations(tenant.namespace)] == ["one-gpu"]


def test_kubectl_scale_is_judged_on_the_growth(gpuquota: Gpuquota) -> None:
    tenant = gpuquota.tenant("e2e-scale", "scaler", "BR")
    ns = tenant.namespace
    created = tenant.apply(pytorchjob("ddp", workers=2, gpus_per_pod=4))  # 8 of 16
    assert created.ok, created.output
    before = sum(r.gpus for r in gpuquota.reservations(ns))
    assert before == 8

    too_far = tenant.kubectl("scale", "pytorchjob/ddp", "--replicas=5")  # 20 of 16
    assert not too_far.ok
    assert 'admission webhook "workloads.gpuquota.io" denied the request' in too_far.stderr, too_far.output
    job_now = gpuquota.cluster.get("pytorchjob", "ddp", ns)
    assert job_now is not None
    assert job_now["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2  # the scale was refused whole

    grown = tenant.kubectl("scale", "pytorchjob/ddp", "--replicas=3")  # 12 of 16: allowed, warned
    assert grown.ok, grown.output
    assert any("tenant-cap" in w for w in grown.warnings), grown.output
    assert sum(r.gpus for r in gpuquota.reservations(ns)) == 12  # the growth was reserved

    shrunk = tenant.kubectl("scale", "pytorchjob/ddp", "--replicas=1")  # not sent (CEL: replicas do not grow)
    assert shrunk.ok, shrunk.output


def test_a_tenants_job_from_its_cronjob_is_counted_on_its_own(gpuquota: Gpuquota) -> None:
    """``kubectl create job --from=cronjob/…`` gives the Job a controller reference to the CronJob, as the CronJob
    controller does; made by the tenant, it must not ride on the CronJob's reservation."""
    tenant = gpuquota.tenant("e2e-cron", "cron", "BR")
    ns = tenant.namespace
    assert tenant.apply(cronjob("nightly", 4, schedule="0 0 1 1 *")).ok
    held = {r.workload.name for r in gpuquota.reservations(ns)}
    manual = tenant.kubectl("create", "job", "manual", "--from=cronjob/nightly")
    assert manual.ok, manual.output
    made = gpuquota.cluster.get("job", "manual", ns)
    assert made is not None
    assert made["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert {r.workload.name for r in gpuquota.reservations(ns)} == held | {"manual"}


def test_each_cronjob_run_is_charged_and_its_pods_ride_on_the_run(gpuquota: Gpuquota) -> None:
    """The real CronJob controller makes the run's Job and the real Job controller its pods. The CronJob itself holds
    nothing (judged at apply time as one run); the run's Job is judged and charged as a workload of its own — so
    overlapping runs are each charged — and its pod, found controller-made and consistent with its controller
    reference, rides on the run's reservation: charged once, not once per object."""
    tenant = gpuquota.tenant("e2e-cronrun", "cronrun", "BR")
    ns = tenant.namespace
    assert tenant.apply(cronjob("every-minute", 2)).ok
    assert gpuquota.audited(ns, "every-minute")["allowed"] is True  # one run fits
    assert gpuquota.reservations(ns) == []  # the CronJob reserves nothing

    # "* * * * *": the controller starts the run at the next minute boundary.
    run = wait_until(lambda: next(iter(gpuquota.cluster.items("jobs", ns)), None), timeout_s=90,
                     what="the CronJob controller's run")
    assert run["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    run_name = run["metadata"]["name"]
    pods = wait_until(lambda: gpuquota.cluster.items("pods", ns), what="the Job controller's pod of the run")

    job_line = gpuquota.audited(ns, run_name)
    assert job_line["allowed"] is True
    assert job_line["owner"] is None, job_line  # judged on its own, not waved through on the CronJob
    assert job_line["reservation"] == "reserved", job_line
    assert str(job_line["user"]).startswith("system:"), job_line  # the controller, not the tenant
    pod_line = gpuquota.audited(ns, pods[0]["metadata"]["name"])
    assert pod_line["owner"] == f"Job {ns}/{run_name}", pod_line
    charged = [(r.workload.kind, r.workload.name, r.gpus) for r in gpuquota.reservations(ns)]
    assert charged == [("Job", run_name, 2.0)]  # the run, once
    assert tenant.kubectl("delete", "cronjob", "every-minute").ok
