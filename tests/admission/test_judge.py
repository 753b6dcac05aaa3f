"""Judging returns an outcome and nothing else: the same review judged without the server, the metrics or the
audit log says skipped, owned, decided, invalid or ledger down — what the answer step then turns into a reply."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gpuquota.admission.judge import Judge, guarded
from gpuquota.admission.live import LiveConfig
from gpuquota.admission.lws import LwsStatefulSets
from gpuquota.admission.outcome import Decided, Deferred, Invalid, LedgerDown, Outcome, Owned, Skipped
from gpuquota.admission.owners import OwnerCache, OwnerRef
from gpuquota.admission.review import parse_review
from gpuquota.admission.routing import Route, route
from gpuquota.admission.trust import Trust
from gpuquota.ledger import Ledger, LedgerUnavailable, ReserveStatus
from gpuquota.ledger.memory import MemoryLedger
from gpuquota.testing import ScriptedLedger
from tests.admission.reviews import TRAINING_OPERATOR, gpu_pod, pytorch_job, review

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _judge(ledger: Ledger) -> Judge:
    trust = Trust(owners=OwnerCache(), lws=LwsStatefulSets(None), can_read_cluster=False,
                  trusted_controllers=[TRAINING_OPERATOR])
    return Judge(ledger, trust, clock=lambda: NOW)


def _outcome(judge: Judge, live: LiveConfig, body: dict[str, Any]) -> Outcome:
    request = parse_review(json.dumps(body).encode())
    result = judge.begin(route(request), request, live.current)
    return guarded(result.run, request.uid) if isinstance(result, Deferred) else result


def test_each_kind_of_outcome(live: LiveConfig) -> None:
    ledger = MemoryLedger()
    judge = _judge(ledger)
    assert _outcome(judge, live, review(gpu_pod("web", "race", 0))) == Skipped()
    decided = _outcome(judge, live, review(gpu_pod("p", "race", 4)))
    assert isinstance(decided, Decided)
    assert (decided.decision.allowed, decided.status, decided.case.workload.name) == (True, ReserveStatus.RESERVED, "p")
    assert ledger.count_active() == 1
    too_big = _outcome(judge, live, review(gpu_pod("q", "race", 40)))
    assert isinstance(too_big, Decided)
    assert not too_big.decision.allowed
    assert too_big.status is None
    assert [r.allowed for r in ledger.decisions] == [True, False]
    invalid = _outcome(judge, live, review(gpu_pod("bad", "race", "many")))
    assert isinstance(invalid, Invalid)
    assert "nvidia.com/gpu" in invalid.message


def test_a_controllers_pod_of_an_admitted_job_is_owned_once_the_ledger_confirms(live: LiveConfig) -> None:
    ledger = MemoryLedger()
    judge = _judge(ledger)
    job = pytorch_job("trainer", "race", workers=1, gpus_per_pod=4)
    assert isinstance(_outcome(judge, live, review(job)), Decided)
    owner = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "trainer",
             "uid": job["metadata"]["uid"], "controller": True}
    labels = {"training.kubeflow.org/job-name": "trainer",
              "training.kubeflow.org/operator-name": "pytorchjob-controller"}
    pod = gpu_pod("trainer-worker-0", "race", 4, labels=labels, owners=[owner])
    first = _outcome(judge, live, review(pod, user=TRAINING_OPERATOR))
    assert first == Owned(OwnerRef("kubeflow.org", "PyTorchJob", "trainer", job["metadata"]["uid"]))
    again = _outcome(judge, live, review(pod, user=TRAINING_OPERATOR))
    assert isinstance(again, Owned)
    assert not again.cached  # a pod always asks the ledger: it rides only within its owner's GPU budget
    assert ledger.riders == {1: {pod["metadata"]["uid"]: 4.0}}  # the retried review rode once
    # the same pod from a tenant is judged on its own
    assert isinstance(_outcome(judge, live, review(pod)), Decided)


def test_a_ledger_that_is_down_is_an_outcome_not_an_exception(live: LiveConfig) -> None:
    judge = _judge(ScriptedLedger(fail_with=LedgerUnavailable("connection refused")))
    outcome = _outcome(judge, live, review(gpu_pod("p", "race", 1)))
    assert outcome == LedgerDown("connection refused")
    assert route(parse_review(json.dumps(review(gpu_pod("p", "race", 1))).encode())) is Route.OBJECT
