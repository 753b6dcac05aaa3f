"""The node agent against recorded Node objects in FakeKube and the fake NVML: publishing, re-publishing on a
MIG change, backoff on API errors, metrics and health."""

from __future__ import annotations

import json
import logging
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpuquota.inventory import ANNOTATION_INVENTORY, LABEL_COUNT, LABEL_MODEL, NodeInventory, discover
from gpuquota.inventory.agent import AgentServer, NodeAgent
from gpuquota.inventory.agent_metrics import AgentMetrics
from gpuquota.kube import KubeError
from gpuquota.testing import FakeKube
from tests.inventory.conftest import PROFILES
from tests.inventory.test_cluster import recorded

NODE = "dgx-a100-1"
PATH = f"/api/v1/nodes/{NODE}"
METRICS_DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def profile(fake_nvml: Callable[[str | Path], None], tmp_path: Path) -> Path:
    """A writable copy of the A100 MIG profile: rewriting it is a MIG reconfiguration."""
    path = tmp_path / "node.profile"
    shutil.copy(PROFILES / "a100-mig-mixed.profile", path)
    fake_nvml(path)
    return path


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    node = recorded("cpu-only")
    node["metadata"]["name"] = NODE
    kube.put(PATH, node)
    return kube


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def agent(kube: FakeKube, profile: Path, clock: Clock) -> NodeAgent:
    return NodeAgent(
        kube,
        NODE,
        lambda: discover(node_name=NODE),
        AgentMetrics(NODE),
        interval_s=60,
        poll_s=5,
        max_backoff_s=8,
        clock=clock,
        wall_clock=lambda: 1_764_130_000.0,
    )


def node_inventory(kube: FakeKube) -> NodeInventory:
    node = kube.get(PATH)
    assert node is not None
    return NodeInventory.from_json(node["metadata"]["annotations"][ANNOTATION_INVENTORY])


def scrape(agent: NodeAgent) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client import generate_latest  # noqa: PLC0415

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(agent.metrics.registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_first_tick_publishes_labels_and_annotation(agent: NodeAgent, kube: FakeKube) -> None:
    assert agent.tick() is True
    node = kube.get(PATH)
    assert node is not None
    labels = node["metadata"]["labels"]
    assert labels[LABEL_MODEL] == "A100-SXM4-80GB"
    assert labels[LABEL_COUNT] == "2"
    assert labels["kubernetes.io/hostname"] == "ip-10-0-3-41.ec2.internal"  # others' labels untouched
    inventory = node_inventory(kube)
    assert inventory.node == NODE
    assert inventory.devices[0].mig_profiles == {"3g.40gb": 1, "2g.20gb": 2}
    assert [(p, t) for p, _, t in kube.patches] == [(PATH, "merge")]


def test_unchanged_inventory_is_republished_only_after_the_interval(
    agent: NodeAgent, kube: FakeKube, clock: Clock
) -> None:
    agent.tick()
    clock.now += 30
    assert agent.tick() is None
    assert len(kube.patches) == 1
    clock.now += 31
    assert agent.tick() is True
    assert len(kube.patches) == 2


def test_mig_reconfiguration_is_published_at_the_next_poll(
    agent: NodeAgent, kube: FakeKube, clock: Clock, profile: Path
) -> None:
    agent.tick()
    text = profile.read_text()
    first_gpu, second_gpu = text.split("\ndevice\n")[1:]
    whole = re.sub(r"\n  mig\n.*", "", first_gpu, flags=re.DOTALL) + (
        "\n  mig\n    name NVIDIA A100-SXM4-80GB MIG 7g.80gb\n    uuid MIG-7f000000-0000-4000-8000-000000000001\n"
        "    gi 0\n    ci 0\n    slices 7\n    sms 98\n    memory_mb 81152\n"
    )
    profile.write_text(text.split("\ndevice\n")[0] + "\ndevice\n" + whole + "\ndevice\n" + second_gpu)
    clock.now += 5  # one poll, far less than the interval
    assert agent.tick() is True
    assert node_inventory(kube).devices[0].mig_profiles == {"7g.80gb": 1}
    slices = scrape(agent)["gpuquota_node_mig_slices"]
    assert slices == [({"node": NODE, "index": "0", "profile": "7g.80gb"}, 1.0)]  # the old profiles are gone


def test_api_errors_back_off_and_recover(agent: NodeAgent, kube: FakeKube, clock: Clock) -> None:
    kube.fail_next(KubeError(503, "etcdserver: leader changed"), KubeError(0, "connection refused"))
    assert agent.tick() is False
    assert agent.kube_error is not None
    assert agent.next_wait() == 1.0
    clock.now += 0.5
    assert agent.tick() is None  # still backing off
    clock.now += 0.5
    assert agent.tick() is False  # second failure: wait doubles
    assert agent.next_wait() == 2.0
    clock.now += 2
    assert agent.tick() is True
    assert agent.kube_error is None
    errors = {s[0]["type"]: s[1] for s in scrape(agent)["gpuquota_agent_errors_total"]}
    assert errors == {"kube": 2.0, "nvml": 0.0}


def test_backoff_is_capped(agent: NodeAgent, kube: FakeKube, clock: Clock) -> None:
    delays = []
    for _ in range(6):
        kube.fail_next(KubeError(500, "internal"))
        assert agent.tick() is False
        delays.append(agent.retry_in)
        assert agent.next_wait() == min(5.0, agent.retry_in or 0)  # the loop still polls NVML meanwhile
        clock.now += agent.retry_in or 0
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped at max_backoff_s
    assert agent.tick() is True
    assert agent.retry_in is None


def test_forbidden_says_what_rbac_is_missing(
    agent: NodeAgent, kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    kube.fail_next(KubeError(403, 'nodes "dgx-a100-1" is forbidden'))
    with caplog.at_level(logging.WARNING):
        assert agent.tick() is False
    assert "needs RBAC to get and patch nodes" in caplog.text


def test_a_missing_node_is_an_error_not_a_crash(kube: FakeKube, profile: Path, clock: Clock) -> None:
    agent = NodeAgent(kube, "no-such-node", lambda: discover(node_name="no-such-node"), clock=clock)
    assert agent.tick() is False
    assert agent.kube_error is not None
    assert "404" in agent.kube_error


def test_nvml_failure_keeps_the_last_inventory_and_reports_unhealthy(
    agent: NodeAgent, kube: FakeKube, clock: Clock, profile: Path
) -> None:
    assert agent.health()[1]["status"] == "starting"
    agent.tick()
    healthy, body = agent.health()
    assert healthy
    assert body["gpus"] == 2
    profile.write_text(profile.read_text() + "\ninit_error 9\n")
    clock.now += 61
    assert agent.tick() is None  # nothing discovered, nothing published
    healthy, body = agent.health()
    assert not healthy
    assert body["status"] == "failing"
    assert "driver is not loaded" in body["nvml_error"]
    assert agent.inventory is not None  # the last good one
    assert len(kube.patches) == 1
    errors = {s[0]["type"]: s[1] for s in scrape(agent)["gpuquota_agent_errors_total"]}
    assert errors["nvml"] == 1.0


def test_device_metrics(agent: NodeAgent) -> None:
    agent.tick()
    samples = scrape(agent)
    tpp = {s[0]["index"]: s for s in samples["gpuquota_node_gpu_tpp"]}
    assert tpp["0"][0]["model"] == "A100-SXM4-80GB"
    assert tpp["0"][0]["class"] == "3A090.a"
    assert tpp["0"][0]["estimated"] == "false"
    assert tpp["0"][1] == 4992.0
    assert samples["gpuquota_node_tpp_total"] == [({"node": NODE}, 9984.0)]
    assert samples["gpuquota_agent_last_publish_timestamp_seconds"] == [({"node": NODE}, 1_764_130_000.0)]
    memory = {s[0]["index"]: s[1] for s in samples["gpuquota_node_gpu_memory_bytes"]}
    assert memory == {"0": 85899345920.0, "1": 85899345920.0}


def test_every_documented_agent_metric_is_exported(agent: NodeAgent) -> None:
    agent.tick()
    section = METRICS_DOC.read_text().split("## Node agent", 1)[1].split("\n## ", 1)[0]  # up to the next section
    documented = re.findall(r"^\| `(gpuquota_[a-z_]+)`", section, flags=re.MULTILINE)
    assert documented
    exported = set(scrape(agent))
    for name in documented:
        assert name in exported, name


# -- HTTP -----------------------------------------------------------------------------------------------------


@pytest.fixture
def server(agent: NodeAgent) -> Iterator[str]:
    http = AgentServer(agent, "127.0.0.1", 0)
    http.start()
    yield f"http://127.0.0.1:{http.port}"
    http.stop()


def get(url: str) -> tuple[int, str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_healthz_and_metrics_over_http(server: str, agent: NodeAgent) -> None:
    status, _, body = get(f"{server}/healthz")
    assert status == 503
    assert json.loads(body)["status"] == "starting"
    agent.tick()
    status, content_type, body = get(f"{server}/healthz")
    assert status == 200
    assert content_type == "application/json"
    assert json.loads(body)["total_tpp"] == 9984.0
    status, content_type, body = get(f"{server}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    assert 'gpuquota_node_tpp_total{node="dgx-a100-1"} 9984.0' in body
    assert get(f"{server}/nope")[0] == 404
