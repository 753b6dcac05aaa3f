"""Suspended workloads hold no GPUs (docs/webhook.md, "Suspended workloads"): the webhook's decision path in-process,
on a real in-memory ledger, review by review — a suspended create, the un-suspend judged like a scale-up from zero,
suspending a running workload, and Kueue-managed objects (which pass while suspended and, un-suspended, ride on the
reservation gpuquota's AdmissionCheck made for the same object, or are judged like any other when there is none)."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuquota.admission.audit import AuditLog
from gpuquota.admission.handler import Admission, Pending, Reply
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.suspension import Suspension, suspension
from gpuquota.ledger import Ledger, WorkloadRef, open_ledger
from gpuquota.ledger.memory import MemoryLedger
from gpuquota.testing import FakeKube
from gpuquota.workloads import resolves
from gpuquota.workloads.kinds.trainjob import runtime_ref
from gpuquota.workloads.registry import KINDS
from gpuquota.workloads.suspension import KUEUE_QUEUE_LABEL, suspended
from tests.admission.reviews import H100, H100_TPP, JOB_CONTROLLER, gpu_pod, load_manifests, review
from tests.admission.serverproc import TEST_POLICY, tenants_yaml
from tests.workloads.test_trainjob_runtime import runtime

NS = "suspend"  # tier-2 (BR): the test profile's tenant-cap allows 16 H100s at once
KUEUE = "system:serviceaccount:kueue-system:kueue-controller-manager"


def job(name: str, pods: int, *, suspend: bool | None = None, queue: str | None = None, gpus: int = 1,
        uid: str | None = None, namespace: str = NS) -> dict[str, Any]:
    """A batch/v1 Job of ``pods`` parallel pods with ``gpus`` H100s each, bounded to 24 h."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid or str(uuid.uuid4()),
                                "annotations": {"gpuquota.io/max-runtime": "24h"}}
    if queue is not None:
        metadata["labels"] = {KUEUE_QUEUE_LABEL: queue}
    spec: dict[str, Any] = {
        "parallelism": pods,
        "completions": pods,
        "activeDeadlineSeconds": 86400,
        "template": {"spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "containers": [{"name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        }},
    }
    if suspend is not None:
        spec["suspend"] = suspend
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def changed(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["spec"].update(spec)
    return new


@dataclass
class Hook:
    """The webhook's decision path (parse → judge → answer) over a memory ledger, with its audit lines."""

    admission: Admission
    ledger: MemoryLedger
    audit_path: Path
    audit: AuditLog = field(repr=False)
    store: Ledger | None = None  # the ledger the webhook uses when not ``ledger`` (a SQL one)

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        result = self.admission.begin(json.dumps(body).encode())
        reply: Reply = result.run() if isinstance(result, Pending) else result
        assert reply.status == 200
        answer: dict[str, Any] = json.loads(reply.body)["response"]
        return answer

    def lines(self) -> list[dict[str, Any]]:
        self.audit.flush()
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def held(self, name: str, namespace: str = NS) -> float:
        """TPP the ledger holds for the Job ``name`` (0 when none)."""
        view = (self.store or self.ledger).find_active(WorkloadRef(namespace, "Job", name, "batch"))
        return 0.0 if view is None else view.tpp


def make_hook(tmp: Path, policy: str | None = None, tenants: list[str] | None = None,
              store: Ledger | None = None, kube: FakeKube | None = None) -> Hook:
    tmp.mkdir(parents=True, exist_ok=True)
    if policy is None:
        (tmp / "policy.yaml").write_text(TEST_POLICY)
        policy = str(tmp / "policy.yaml")
    (tmp / "tenants.yaml").write_text(tenants_yaml([f"{NS}:BR", *(tenants or [])]))
    live = LiveConfig(policy, tmp / "tenants.yaml")
    ledger = MemoryLedger()
    audit = AuditLog(str(tmp / "audit.jsonl"))
    admission = Admission(live, store or ledger, WebhookMetrics(lambda: live.current.known_tenants), audit,
                          trusted_controllers=[], kube=kube)
    return Hook(admission, ledger, tmp / "audit.jsonl", audit, store)


@pytest.fixture
def hook(tmp_path: Path) -> Hook:
    return make_hook(tmp_path)


def fill(hook: Hook, gpus: int) -> None:
    """Another workload of the tenant holds ``gpus`` H100s."""
    answer = hook(review(gpu_pod(f"other-{uuid.uuid4().hex[:6]}", NS, gpus)))
    assert answer["allowed"], answer


# --- a suspended create --------------------------------------------------------------------------------------------


def test_a_suspended_create_reserves_nothing_and_is_recorded(hook: Hook) -> None:
    answer = hook(review(job("later", 4, suspend=True)))
    assert answer["allowed"] is True
    assert hook.ledger.count_active() == 0
    assert hook.held("later") == 0
    [record] = hook.ledger.decisions
    assert record.allowed
    assert record.name == "later"
    assert "suspended: nothing is reserved until it is un-suspended" in record.message
    [line] = hook.lines()
    assert line["reservation"] is None
    assert line["decision"] == "allowed"


def test_a_suspended_create_still_meets_the_rules_its_demand_alone_breaks(hook: Hook) -> None:
    # 17 H100s can never fit a 16-H100 cap: the tenant learns it now, not at un-suspend
    answer = hook(review(job("too-big", 17, suspend=True)))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    assert hook.ledger.count_active() == 0


def test_a_suspended_create_that_would_not_fit_now_is_allowed_with_a_warning(hook: Hook) -> None:
    fill(hook, 14)
    answer = hook(review(job("queued", 4, suspend=True)))
    assert answer["allowed"] is True
    assert any(w.startswith("un-suspending it now would be refused") for w in answer.get("warnings", []))
    assert hook.held("queued") == 0
    assert hook.ledger.count_active() == 1  # the filler only


def test_a_suspended_create_of_an_unknown_jurisdiction_is_refused(hook: Hook) -> None:
    answer = hook(review(job("nowhere", 1, suspend=True, namespace="no-such-tenant")))
    assert answer["allowed"] is False
    assert "jurisdiction" in answer["status"]["message"]


def test_a_tier3_tenant_asking_for_3a090_parts_is_refused_even_suspended(tmp_path: Path) -> None:
    hook = make_hook(tmp_path, policy="ai-diffusion-2025", tenants=["tier3:CN"])
    answer = hook(review(job("h100s", 1, suspend=True, namespace="tier3")))
    assert answer["allowed"] is False
    assert "tier3-no-3a090" in answer["status"]["message"]
    # Kueue-managed, the same Job passes while suspended: gpuquota's AdmissionCheck rejects it inside Kueue's flow
    queued = hook(review(job("queued-h100s", 1, suspend=True, queue="main", namespace="tier3")))
    assert queued["allowed"] is True
    # … and un-suspending it anyway (no check reservation) meets the rule
    old = job("queued-h100s", 1, suspend=True, queue="main", namespace="tier3")
    resumed = hook(review(changed(old, suspend=False), operation="UPDATE", old=old))
    assert resumed["allowed"] is False
    assert "tier3-no-3a090" in resumed["status"]["message"]


def test_a_dry_run_suspended_create_writes_nothing(hook: Hook) -> None:
    assert hook(review(job("dry", 2, suspend=True), dry_run=True))["allowed"] is True
    assert hook.ledger.decisions == []


# --- un-suspending -------------------------------------------------------------------------------------------------


def test_un_suspending_within_the_cap_charges_the_whole_workload(hook: Hook) -> None:
    old = job("resume", 4, suspend=True)
    hook(review(old))
    answer = hook(review(changed(old, suspend=False), operation="UPDATE", old=old))
    assert answer["allowed"] is True
    assert hook.held("resume") == pytest.approx(4 * H100_TPP)


def test_un_suspending_at_the_cap_is_refused_with_the_figures(hook: Hook) -> None:
    old = job("blocked", 4, suspend=True)
    hook(review(old))
    fill(hook, 14)
    answer = hook(review(changed(old, suspend=False), operation="UPDATE", old=old))
    assert answer["allowed"] is False
    message = answer["status"]["message"]
    assert "tenant-cap" in message
    assert "221.6k TPP already held" in message
    assert hook.held("blocked") == 0


def test_un_suspending_and_growing_at_once_is_judged_on_the_whole_new_demand(hook: Hook) -> None:
    old = job("grow", 2, suspend=True)
    hook(review(old))
    answer = hook(review(changed(old, suspend=False, parallelism=8, completions=8), operation="UPDATE", old=old))
    assert answer["allowed"] is True
    assert hook.held("grow") == pytest.approx(8 * H100_TPP)


def test_growing_while_suspended_is_not_charged_but_the_un_suspend_charges_it_all(hook: Hook) -> None:
    old = job("sleeper", 2, suspend=True)
    hook(review(old))
    grown = changed(old, parallelism=12, completions=12)
    assert hook(review(grown, operation="UPDATE", old=old))["allowed"] is True
    assert hook.held("sleeper") == 0
    fill(hook, 6)
    answer = hook(review(changed(grown, suspend=False), operation="UPDATE", old=grown))
    assert answer["allowed"] is False  # 6 held + 12 > 16: the growth is not forgotten
    assert hook.held("sleeper") == 0


def test_a_dry_run_un_suspend_reserves_nothing(hook: Hook) -> None:
    old = job("dry-resume", 2, suspend=True)
    hook(review(old))
    answer = hook(review(changed(old, suspend=False), operation="UPDATE", old=old, dry_run=True))
    assert answer["allowed"] is True
    assert hook.ledger.count_active() == 0


# --- suspending a running workload ---------------------------------------------------------------------------------


def test_suspending_passes_releases_nothing_and_the_un_suspend_rides_on_the_reservation(hook: Hook) -> None:
    running = job("pause", 4, suspend=False)
    assert hook(review(running))["allowed"] is True
    assert hook.held("pause") == pytest.approx(4 * H100_TPP)
    paused = changed(running, suspend=True)
    assert hook(review(paused, operation="UPDATE", old=running))["allowed"] is True
    assert hook.held("pause") == pytest.approx(4 * H100_TPP)  # its pods may still hold the GPUs: the reconciler frees
    fill(hook, 12)  # the tenant is now at its cap, its own held reservation included
    answer = hook(review(changed(paused, suspend=False), operation="UPDATE", old=paused))
    assert answer["allowed"] is True  # charged once, before it was suspended
    assert hook.held("pause") == pytest.approx(4 * H100_TPP)
    assert "reserved before it was suspended" in hook.lines()[-1]["message"]


def test_a_suspended_job_cannot_be_grown_into_more_than_its_reservation(hook: Hook) -> None:
    running = job("stretch", 2, suspend=False)
    hook(review(running))
    paused = changed(running, suspend=True)
    hook(review(paused, operation="UPDATE", old=running))
    grown = changed(paused, parallelism=6, completions=6)
    hook(review(grown, operation="UPDATE", old=paused))
    answer = hook(review(changed(grown, suspend=False), operation="UPDATE", old=grown))
    assert answer["allowed"] is True
    # the 2-GPU reservation does not cover 6: the whole 6 are charged (never under-counted; the old one is settled
    # by the reconciler with the workload)
    assert hook.held("stretch") == pytest.approx(8 * H100_TPP)


# --- Kueue-managed objects -----------------------------------------------------------------------------------------


def check_reserves(hook: Hook, obj: dict[str, Any]) -> None:
    """What gpuquota's AdmissionCheck does when Kueue admits the Workload of ``obj``: reserve under the owner Job's
    identity (kind, namespace, name, uid), the contract the webhook relies on."""
    admitted = changed(obj, suspend=False)
    assert hook(review(admitted, user="system:serviceaccount:gpuquota:gpuquota-kueue"))["allowed"] is True


def test_a_kueue_managed_job_passes_while_suspended_without_touching_the_ledger(hook: Hook) -> None:
    answer = hook(review(job("queued", 40, suspend=True, queue="team-a")))
    assert answer["allowed"] is True  # even above the cap: admission is Kueue's check's
    assert hook.ledger.decisions == []
    [line] = hook.lines()
    assert "managed by Kueue" in line["message"]
    assert "'team-a'" in line["message"]


def test_kueue_un_suspending_an_admitted_job_charges_nothing_twice(hook: Hook) -> None:
    queued = job("admitted", 4, suspend=True, queue="team-a")
    hook(review(queued))
    check_reserves(hook, queued)
    assert hook.held("admitted") == pytest.approx(4 * H100_TPP)
    fill(hook, 12)  # at the cap now, the check's reservation included
    answer = hook(review(changed(queued, suspend=False), operation="UPDATE", old=queued, user=KUEUE))
    assert answer["allowed"] is True
    assert hook.held("admitted") == pytest.approx(4 * H100_TPP)
    line = hook.lines()[-1]
    assert "gpuquota's Kueue AdmissionCheck admitted it (queue 'team-a')" in line["message"]
    assert "nothing is charged twice" in line["message"]
    assert line["reservation"].startswith("held:")
    # its pods ride on that reservation as any Job's do
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "admitted", "uid": queued["metadata"]["uid"],
             "controller": True}
    pod = gpu_pod("admitted-0", NS, 1, labels={"batch.kubernetes.io/job-name": "admitted", "job-name": "admitted"},
                  owners=[owner])
    assert hook(review(pod, user=JOB_CONTROLLER))["allowed"] is True
    assert hook.ledger.count_active() == 2


def test_a_queue_name_label_is_no_way_around_the_cap(hook: Hook) -> None:
    """The bypass: a tenant labels its Job for a queue that does not exist (or a Kueue whose ClusterQueue does not
    list gpuquota's check, or no Kueue at all) and un-suspends it itself. No check reservation: judged like any other
    un-suspend — refused at the cap, charged within it."""
    fill(hook, 14)
    sneaky = job("sneaky", 4, suspend=True, queue="no-such-queue")
    assert hook(review(sneaky))["allowed"] is True
    answer = hook(review(changed(sneaky, suspend=False), operation="UPDATE", old=sneaky))
    assert answer["allowed"] is False
    assert "tenant-cap" in answer["status"]["message"]
    assert hook.held("sneaky") == 0
    small = job("small", 2, suspend=True, queue="no-such-queue")
    hook(review(small))
    assert hook(review(changed(small, suspend=False), operation="UPDATE", old=small))["allowed"] is True
    assert hook.held("small") == pytest.approx(2 * H100_TPP)


def test_a_check_reservation_smaller_than_the_un_suspended_job_does_not_cover_it(hook: Hook) -> None:
    queued = job("bigger", 2, suspend=True, queue="team-a")
    hook(review(queued))
    check_reserves(hook, queued)
    fill(hook, 10)
    grown = changed(queued, suspend=False, parallelism=6, completions=6)
    answer = hook(review(grown, operation="UPDATE", old=queued))
    assert answer["allowed"] is False  # 12 held + 6 > 16: judged whole, not waved through on 2 GPUs' reservation


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_reservation_of_an_earlier_object_of_that_name_is_not_this_ones(tmp_path: Path, backend: str) -> None:
    """A Job deleted without the webhook hearing of it (the release hook may fail) still holds its reservation; a new
    Job of the same name — another object, another uid — is un-suspended: it is judged, not waved through on the old
    object's reservation (nor on a Kueue check reservation made for the old uid)."""
    store = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}") if backend == "sqlite" else None
    hook = make_hook(tmp_path / "hook", store=store)
    earlier = job("again", 4, suspend=False)
    assert hook(review(earlier))["allowed"] is True
    fill(hook, 10)  # 14 of 16 held
    later = job("again", 4, suspend=True, queue="team-a")  # a new uid
    assert hook(review(later))["allowed"] is True
    answer = hook(review(changed(later, suspend=False), operation="UPDATE", old=later))
    assert answer["allowed"] is False  # 14 + 4 > 16
    assert "tenant-cap" in answer["status"]["message"]
    assert hook.held("again") == pytest.approx(4 * H100_TPP)  # the earlier object's only
    if store is not None:
        store.close()


def test_kueue_evicting_a_job_suspends_it_and_passes(hook: Hook) -> None:
    queued = job("evicted", 2, suspend=True, queue="team-a")
    check_reserves(hook, queued)
    running = changed(queued, suspend=False)
    hook(review(running, operation="UPDATE", old=queued, user=KUEUE))
    answer = hook(review(changed(running, suspend=True), operation="UPDATE", old=running, user=KUEUE))
    assert answer["allowed"] is True
    assert "nothing is charged or released" in hook.lines()[-1]["message"]


# --- every suspendable kind ----------------------------------------------------------------------------------------

SUSPENDABLE = {k.key: k for k in KINDS if k.suspend is not None}


def _set(obj: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = obj
    for step in path[:-1]:
        node = node.setdefault(step, {})
    node[path[-1]] = value


def _suspendable_manifests() -> list[tuple[str, dict[str, Any]]]:
    found: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for where, obj in load_manifests():
        key = (str(obj["apiVersion"]).rpartition("/")[0], str(obj["kind"]))
        if key in SUSPENDABLE:
            found.setdefault(key, (where, obj))
    return list(found.values())


def test_every_suspendable_kind_has_a_manifest_here() -> None:
    assert {(str(o["apiVersion"]).rpartition("/")[0], o["kind"]) for _, o in _suspendable_manifests()} == set(
        SUSPENDABLE)


@pytest.mark.parametrize(("where", "manifest"), _suspendable_manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_kind_created_suspended_reserves_nothing_and_un_suspended_is_charged(
        tmp_path: Path, where: str, manifest: dict[str, Any]) -> None:
    del where
    kube = FakeKube()
    if resolves(manifest):  # a TrainJob is counted from the runtime it names: the cluster holds it
        kube.put(runtime_ref(manifest).path, runtime())
    hook = make_hook(tmp_path, tenants=["big:JP"], kube=kube)  # tier-1: warned above its soft cap, never denied
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(namespace="big", uid=str(uuid.uuid4()))
    key = (str(obj["apiVersion"]).rpartition("/")[0], str(obj["kind"]))
    path = SUSPENDABLE[key].suspend
    assert path is not None
    _set(obj, path, True)
    assert suspended(obj, key)
    assert hook(review(obj))["allowed"] is True
    assert hook.ledger.count_active() == 0
    resumed = copy.deepcopy(obj)
    _set(resumed, path, False)
    assert suspension(key, resumed, obj) is Suspension.RESUMING
    assert hook(review(resumed, operation="UPDATE", old=obj))["allowed"] is True
    # a CronJob reserves nothing even running: each run (a Job its controller creates) is judged and charged
    assert hook.ledger.count_active() == (1 if SUSPENDABLE[key].reserves else 0)


def test_only_a_literal_true_suspends() -> None:
    key = ("batch", "Job")
    for value in ("true", 1, None, False, {"x": 1}):
        assert not suspended(changed(job("j", 1), suspend=value), key)
    assert not suspended({"spec": "oops"}, key)
    assert not suspended(job("j", 1, suspend=True), ("", "Pod"))  # a Pod cannot be suspended


# --- the property: no sequence leaves running GPUs uncharged -------------------------------------------------------

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["create", "create-suspended", "suspend", "resume", "grow", "check"]),
              st.integers(0, 2), st.integers(1, 6), st.booleans()),
    min_size=1, max_size=14,
)


def _step(hook: Hook, jobs: dict[str, dict[str, Any]], step: tuple[str, int, int, bool]) -> None:
    """One action of the property, applied to ``jobs`` (the cluster's objects) only when the webhook allows it."""
    action, index, pods, labelled = step
    name = f"j{index}"
    current = jobs.get(name)
    new: dict[str, Any] | None = None
    if action.startswith("create") and current is None:
        new = job(name, pods, suspend=action == "create-suspended", queue="q" if labelled else None)
        body = review(new)
    elif current is None:
        return
    elif action == "check":
        if current["spec"]["suspend"]:  # gpuquota's AdmissionCheck admits it: a reservation under the Job's identity
            hook(review(changed(current, suspend=False), user="system:serviceaccount:gpuquota:gpuquota-kueue"))
        return
    elif action == "grow":
        grown = current["spec"]["parallelism"] + pods
        new = changed(current, parallelism=grown, completions=grown)
        body = review(new, operation="UPDATE", old=current)
    elif action in ("suspend", "resume"):
        new = changed(current, suspend=action == "suspend")
        body = review(new, operation="UPDATE", old=current)
    else:
        return
    if hook(body)["allowed"]:
        jobs[name] = new


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS)
def test_suspend_and_un_suspend_sequences_never_leave_running_gpus_uncharged(
        tmp_path_factory: pytest.TempPathFactory, actions: list[tuple[str, int, int, bool]]) -> None:
    """Any sequence of creates (suspended or not, Kueue-labelled or not), suspends, un-suspends, growth and
    AdmissionCheck reservations, each applied to the cluster's objects only when the webhook allows it: every Job
    that is not suspended is covered by what the ledger holds for it, a Job that never ran nor was admitted by the
    check holds nothing, and the tenant's cap is never overrun."""
    hook = make_hook(tmp_path_factory.mktemp("prop"))
    jobs: dict[str, dict[str, Any]] = {}
    for step in actions:
        _step(hook, jobs, step)
        for name, obj in jobs.items():
            if not obj["spec"]["suspend"]:
                assert hook.held(name) >= obj["spec"]["parallelism"] * H100_TPP - 1e-6, (name, actions)
        total = sum(r.tpp for i, (r, _) in enumerate(hook.ledger.reservations) if i + 1 in hook.ledger.active)
        assert total <= 16 * H100_TPP + 1e-6
    for name in jobs:
        touched = [a for a, i, _, _ in actions if f"j{i}" == name]
        if "check" not in touched and "resume" not in touched and "create" not in touched:
            assert hook.held(name) == 0
