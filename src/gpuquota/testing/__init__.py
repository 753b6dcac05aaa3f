"""Test seams that are not the product: an in-memory Kubernetes API (``FakeKube``) and a scripted ledger
(``ScriptedLedger``), for fast unit tests of the agent, the reconciler, the caches and the webhook's judgement.
Fakes never decide what is true about Kubernetes: the end-to-end tests run a real API server."""

from gpuquota.testing.kube import FakeKube, merge_patch
from gpuquota.testing.ledger import ScriptedLedger

__all__ = ["FakeKube", "ScriptedLedger", "merge_patch"]
