"""The cluster view fed by the real HTTP client: list, chunked watch streams, an in-stream 410 and a relist."""

from __future__ import annotations

import threading
from pathlib import Path

from gpuquota.catalog import Catalog
from gpuquota.inventory import ClusterInventory, run_node_watch
from gpuquota.kube import KubeClient
from tests.inventory.test_cluster import eventually, recorded
from tests.kube.apiserver import ApiState, api_server


def test_node_watch_over_http(catalog: Catalog, tmp_path: Path) -> None:
    state = ApiState()
    for name in ("gfd-h100-p5", "cpu-only"):
        node = recorded(name)
        state.put(f"/api/v1/nodes/{node['metadata']['name']}", node)
    token = tmp_path / "token"
    token.write_text(state.token)
    view = ClusterInventory(catalog)
    stop = threading.Event()
    with api_server(state) as url, KubeClient.connect(url, token_file=token) as kube:
        thread = threading.Thread(
            target=run_node_watch,
            args=(kube, view, stop),
            kwargs={"watch_timeout_s": 1, "max_backoff_s": 0.05, "idle_wait_s": 0.01},
            daemon=True,
        )
        thread.start()
        try:
            assert view.synced.wait(5)
            assert view.models() == ("H100-SXM5-80GB",)
            l4 = recorded("gfd-l4-shared")
            state.put("/api/v1/nodes/gke-pool-l4-3f9a", l4)
            eventually(lambda: view.models() == ("H100-SXM5-80GB", "L4"))
            # A node gone without an event, and every version the watcher holds expired: the server answers the
            # watch with an in-stream ERROR 410, and only the relist that follows can notice the deletion.
            state.objects.pop("/api/v1/nodes/ip-10-0-12-7.ec2.internal")
            state.version += 1
            state.oldest_version = state.version
            eventually(lambda: view.models() == ("L4",))
        finally:
            stop.set()
            thread.join(5)
    assert not thread.is_alive()
    lists = [r for r in state.requests if r.method == "GET" and "watch" not in r.query]
    assert len(lists) >= 2  # the initial list and the relist after 410
