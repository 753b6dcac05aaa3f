"""Fixtures of the end-to-end suite: one real control plane per pytest run (``cluster``), the workload kinds' CRDs
from their upstream modules (``crds``), and gpuquota installed into it (``gpuquota``, see tests/e2e/install.py):
the chart's objects applied to the API server and its webhook configuration pointing at a local ``gpuquota serve``.

Set ``GPUQUOTA_E2E_CLUSTER=NAME`` to run against a cluster already started with ``scripts/cluster up NAME`` (it
is then left running); otherwise the suite starts ``e2e-<pid>`` and removes it at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.admission.serverproc import TEST_POLICY
from tests.cluster import Cluster, wait_until
from tests.e2e.crds import crd_files
from tests.e2e.install import Gpuquota, install
from tests.inventory.conftest import fake_nvml_library  # noqa: F401 - re-exported fixture (the agent test)

CRD_GROUPS = frozenset({"jobset.x-k8s.io", "leaderworkerset.x-k8s.io", "kubeflow.org", "trainer.kubeflow.org",
                        "ray.io", "kueue.x-k8s.io"})
FLEET_NAMESPACE = "e2e-fleet"  # judged by the fleet's webhooks (test_fleet); the main one skips it
OUTAGE_NAMESPACE = "e2e-outage"  # judged by a second release whose webhook the outage tests stop; the main one skips it
# (with the run's suffix, as every namespace: Gpuquota.name)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The control plane of this run (``scripts/cluster up``); torn down at the end unless it was given."""
    given = os.environ.get("GPUQUOTA_E2E_CLUSTER")
    if given:
        yield Cluster.up(given)
        return
    started = Cluster.up(f"e2e-{os.getpid()}")
    try:
        yield started
    finally:
        started.down()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """Every supported workload kind's CRD, applied and Established; and, as the operators' own installs do, their
    kinds aggregated into the ``admin`` ClusterRole a tenant gets in its namespace."""
    args = [arg for path in crd_files() for arg in ("-f", str(path))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args, timeout_s=180)
    cluster.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "e2e-workload-kinds-admin",
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
        "rules": [{"apiGroups": list(CRD_GROUPS), "resources": ["*"], "verbs": ["*"]}],
    })
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s", timeout_s=150)
    wait_until(lambda: {group for rule in (cluster.get("clusterrole", "admin") or {}).get("rules", [])
                                      for group in rule.get("apiGroups", [])} >= CRD_GROUPS,
               what="the admin ClusterRole to aggregate the workload kinds")


@pytest.fixture(scope="session")
def gpuquota(cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpuquota]:
    """gpuquota under the small-cap test profile (tests/admission/serverproc.py: TEST_POLICY); tenancy from the
    Namespace labels the admin sets (``Gpuquota.tenant``)."""
    run = secrets.token_hex(2)
    with install(cluster, tmp_path_factory.mktemp("gpuquota-e2e"), TEST_POLICY, run=run,
                 exclude=[f"{OUTAGE_NAMESPACE}-{run}", f"{FLEET_NAMESPACE}-{run}"]) as g:
        yield g
