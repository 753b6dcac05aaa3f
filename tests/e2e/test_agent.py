"""The node agent on a real API server: it reads a fake NVML (the real pynvml bindings over a small C library),
publishes the inventory on its own Node with the chart's service account — its token bound to a pod on that node,
as a DaemonSet pod's projected token is — and the chart's ValidatingAdmissionPolicy keeps it off every other Node.
The webhook's cluster view (a watch on Nodes) then counts the node's GPUs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import wait_until
from tests.e2e.install import NAMESPACE, RELEASE, Gpuquota
from tests.e2e.procs import start

FAKE_NVML = Path(__file__).resolve().parents[1] / "inventory" / "fakenvml"
AGENT_SA = f"{RELEASE}-gpuquota-agent"


def _node(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}


def _cluster_gpus(gpuquota: Gpuquota) -> float:
    return sum(sample.value for family in text_string_to_metric_families(gpuquota.webhook.metrics())
               for sample in family.samples if sample.name == "gpuquota_cluster_gpus")


def test_agent_publishes_to_its_own_node_only_and_the_webhook_sees_it(
    gpuquota: Gpuquota, fake_nvml_library: Path
) -> None:
    cluster = gpuquota.cluster
    own_node, other_node = gpuquota.name("e2e-gpu-1"), gpuquota.name("e2e-gpu-2")
    cluster.apply([_node(own_node), _node(other_node)])
    # The agent's pod on e2e-gpu-1 (no kubelet runs it: it only anchors the bound token, as a DaemonSet pod would).
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"agent-{own_node}", "namespace": NAMESPACE},
                   "spec": {"nodeName": own_node, "serviceAccountName": AGENT_SA,
                            "containers": [{"name": "agent", "image": "registry.example/gpuquota:0"}]}})
    token = gpuquota.root / "agent.token"
    token.write_text(cluster.kubectl("create", "token", AGENT_SA, "-n", NAMESPACE, "--bound-object-kind", "Pod",
                                     "--bound-object-name", f"agent-{own_node}").stdout.strip())
    profile = FAKE_NVML / "profiles" / "h100-sxm-8x.profile"
    env = {"LD_LIBRARY_PATH": str(fake_nvml_library.parent), "FAKE_NVML_PROFILE": str(profile)}
    before = _cluster_gpus(gpuquota)

    def agent(node: str) -> subprocess.Popen[bytes]:
        proc = start(f"agent-{node}", ["agent", "--once", "--node-name", node, "--log-level", "warning",
                                       *cluster.api_flags(token)], gpuquota.root / "agents", env=env)
        proc.proc.wait(60)
        return proc.proc

    own = agent(own_node)
    assert own.returncode == 0, (gpuquota.root / "agents" / f"agent-{own_node}.log").read_text()
    node = cluster.get("node", own_node)
    assert node is not None
    labels = node["metadata"]["labels"]
    assert any(key.startswith("gpuquota.io/") for key in labels), labels
    assert labels["kubernetes.io/hostname"] == own_node  # the agent left other labels alone
    assert wait_until(lambda: _cluster_gpus(gpuquota) >= before + 8, what="the webhook's view of the 8 GPUs")

    other = agent(other_node)
    assert other.returncode != 0
    log = (gpuquota.root / "agents" / f"agent-{other_node}.log").read_text()
    assert "may only change the Node it runs on" in log, log
    untouched = cluster.get("node", other_node)
    assert untouched is not None
    assert not any(key.startswith("gpuquota.io/") for key in untouched["metadata"].get("labels", {}))
