"""gpuquota's Kubernetes access against the real API server of this run: configuration read by the official
``kubernetes`` package (the admin kubeconfig's client certificates, a token kubeconfig, an exec plugin, a second
context, the in-cluster layout from a directory), a token rotated under a running watch, RBAC denied for one
resource and granted back, and an API server restarted under the caches."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.kube import ElectionTiming, ForbiddenError, KubeClient, KubeSource, LeaderElector
from gpuquota.kube.config import load_credentials
from gpuquota.kube.health import WatchHealth
from gpuquota.kube.reflector import Backoff, Reflector
from tests.cluster import Cluster, wait_until

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
NS = "kube-client-e2e"
SA = "gq-client"


def whoami(kube: KubeClient) -> str:
    review = kube.create(SELF_REVIEW, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                                       "metadata": {"name": "me"}})  # the name is ignored; create needs one
    return str(review["status"]["userInfo"]["username"])


@pytest.fixture(scope="module")
def identity(cluster: Cluster) -> str:
    """A service account that may list and watch namespaces (not nodes): the user of the token tests."""
    cluster.apply([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "gq-client-e2e"},
         "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "gq-client-e2e"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gq-client-e2e"},
         "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]},
    ])
    return f"system:serviceaccount:{NS}:{SA}"


def bound_token(cluster: Cluster, secret: str) -> str:
    """A token bound to a Secret: deleting the Secret revokes it (how a rotation is made observable)."""
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": NS}})
    return cluster.kubectl("create", "token", SA, "-n", NS, "--bound-object-kind", "Secret",
                           "--bound-object-name", secret, "--duration", "1h").stdout.strip()


def test_the_admin_kubeconfig_authenticates_with_its_client_certificate(cluster: Cluster) -> None:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    assert any("client-certificate" in str(u["user"]) for u in admin["users"])  # no token in it
    with KubeClient.connect(kubeconfig=cluster.kubeconfig) as kube:
        assert whoami(kube) == "admin"
        assert kube.get("/api/v1/namespaces/default") is not None


def test_token_exec_plugin_and_second_context(cluster: Cluster, identity: str, tmp_path: Path) -> None:
    token = cluster.token(SA, NS, duration="1h")
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
                      f"'kind': 'ExecCredential', 'status': {{'token': {token!r}}}}}))\n")
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin_cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "token",
        "clusters": [{"name": "e2e", "cluster": admin_cluster}],
        "users": [{"name": "sa-token", "user": {"token": token}},
                  {"name": "sa-exec", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                         "command": sys.executable, "args": [str(plugin)],
                                                         "interactiveMode": "Never"}}},
                  {"name": "admin", "user": admin["users"][0]["user"]}],
        "contexts": [{"name": "token", "context": {"cluster": "e2e", "user": "sa-token"}},
                     {"name": "exec", "context": {"cluster": "e2e", "user": "sa-exec"}},
                     {"name": "admin", "context": {"cluster": "e2e", "user": "admin"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    for context, user in (("token", identity), ("exec", identity), ("admin", "admin")):
        with KubeClient.connect(kubeconfig=path, context=context) as kube:
            assert whoami(kube) == user, context
    with KubeClient.connect(kubeconfig=path) as kube, pytest.raises(ForbiddenError):  # the current context: token
        kube.list("/api/v1/nodes")
    credentials = load_credentials(KubeSource(), environ={"KUBECONFIG": str(path)})  # $KUBECONFIG, no flag
    assert credentials.endpoint.host == cluster.apiserver


def test_lease_election_on_the_real_api_server(cluster: Cluster, identity: str) -> None:
    """Two candidates for one Lease: one leads, the other waits; a clean stop releases it and the other takes over
    at once (conflicts and resourceVersions are the API server's own)."""
    timing = ElectionTiming(lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
    with KubeClient.connect(kubeconfig=cluster.kubeconfig) as kube:
        first = LeaderElector(kube, "kc-lease", NS, "replica-a", timing)
        second = LeaderElector(kube, "kc-lease", NS, "replica-b", timing)
        assert first.tick()
        assert not second.tick()
        assert first.tick()  # renewed
        assert first.release()
        assert second.tick()
        lease = kube.get(second.path)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] == 1


def in_cluster_dir(cluster: Cluster, tmp_path: Path, token: str) -> tuple[Path, dict[str, str]]:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(cluster.ca_file.read_bytes())
    port = cluster.apiserver.rsplit(":", 1)[1]
    return sa, {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def follow(kube: KubeClient, cache: NamespaceCache, health: WatchHealth, stop: threading.Event) -> threading.Thread:
    reflector = Reflector(kube, "/api/v1/namespaces", cache, name="namespaces", health=health, watch_timeout_s=2,
                          backoff=Backoff(0.1, 1.0))
    thread = threading.Thread(target=reflector.run, args=(stop,), daemon=True)
    thread.start()
    return thread


def namespace(cluster: Cluster) -> str:
    name = f"kc-{uuid.uuid4().hex[:8]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def test_in_cluster_layout_and_a_token_rotated_under_the_watch(
    cluster: Cluster, identity: str, tmp_path: Path, stop: threading.Event
) -> None:
    first = bound_token(cluster, "token-a")
    sa, environ = in_cluster_dir(cluster, tmp_path, first)
    cache, health = NamespaceCache(), WatchHealth(grace_s=0)
    with KubeClient.in_cluster(sa, environ) as kube:
        assert kube.api_server == f"https://127.0.0.1:{environ['KUBERNETES_SERVICE_PORT']}"
        thread = follow(kube, cache, health, stop)
        wait_until(lambda: cache.synced, what="the namespace cache's first list")
        (sa / "token").write_text(bound_token(cluster, "token-b"))  # the kubelet rotates the projected token
        cluster.kubectl("delete", "secret", "token-a", "-n", NS)  # … and the old one stops working
        created = namespace(cluster)
        wait_until(lambda: cache.labels(created) is not None, timeout_s=60, what="a namespace made after rotation")
        assert whoami(kube) == identity
        assert thread.is_alive()
        assert health.problems() == {}


def test_rbac_denied_for_one_resource_is_named_and_recovers(
    cluster: Cluster, identity: str, tmp_path: Path, stop: threading.Event
) -> None:
    token = tmp_path / "token"
    token.write_text(cluster.token(SA, NS, duration="1h"))
    health = WatchHealth(grace_s=3600)
    nodes: list[dict[str, Any]] = []

    class Nodes:
        def replace(self, items: list[dict[str, Any]]) -> None:
            nodes[:] = items

        def apply(self, event: Any) -> None:
            pass

    with KubeClient.connect(cluster.apiserver, token, cluster.ca_file) as kube:
        reflector = Reflector(kube, "/api/v1/nodes", Nodes(), name="nodes", health=health, backoff=Backoff(0.1, 1.0))
        threading.Thread(target=reflector.run, args=(stop,), daemon=True).start()
        cache = NamespaceCache()
        follow(kube, cache, health, stop)
        problems = wait_until(health.problems, what="the forbidden node watch in readiness")
        assert list(problems) == ["nodes"]
        assert "forbidden" in problems["nodes"]
        assert f'"{identity}"' in problems["nodes"]
        wait_until(lambda: cache.synced, what="the namespaces, which this account may watch")
        cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                       "metadata": {"name": "gq-client-e2e"},
                       "rules": [{"apiGroups": [""], "resources": ["namespaces", "nodes"],
                                  "verbs": ["get", "list", "watch"]}]})
        try:
            wait_until(lambda: not health.problems(), timeout_s=30, what="recovery once RBAC allows nodes")
            assert reflector.current
        finally:
            cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                           "metadata": {"name": "gq-client-e2e"},
                           "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                                      "verbs": ["get", "list", "watch"]}]})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def second_apiserver(cluster: Cluster, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Another kube-apiserver on the run's etcd, keys and certificates (the same command line, another port): one
    this test may stop and start without disturbing the others'."""
    pid = (cluster.kubeconfig.parent / "kube-apiserver.pid").read_text().strip()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    args = [a.decode() for a in argv]
    index = args.index("--secure-port")
    args[index + 1] = str(port)
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_an_api_server_restarted_under_the_caches(cluster: Cluster, tmp_path: Path, stop: threading.Event) -> None:
    port = _free_port()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "apiserver.log"
    server = second_apiserver(cluster, port, log)
    try:
        kube = KubeClient.connect(kubeconfig=path)
        wait_until(lambda: _ready(kube), timeout_s=90, interval_s=0.5, what="the second API server")
        cache, health = NamespaceCache(), WatchHealth(grace_s=0)
        thread = follow(kube, cache, health, stop)
        wait_until(lambda: cache.synced, what="the first list")
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        wait_until(lambda: "namespaces" in health.problems(), what="the outage seen")
        created = namespace(cluster)  # through the run's own API server while this one is down
        server = second_apiserver(cluster, port, log)
        wait_until(lambda: cache.labels(created) is not None, timeout_s=90, interval_s=0.2,
                   what="the cache catching up after the restart")
        wait_until(lambda: not health.problems(), what="readiness back")
        assert thread.is_alive()
        kube.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def _ready(kube: KubeClient) -> bool:
    try:
        return kube.get("/api/v1/namespaces/default") is not None
    except Exception:  # not up yet
        return False

