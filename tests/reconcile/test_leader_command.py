"""``gpuquota reconcile`` with leader election, end to end: two real processes, the real client against the local
API server (Leases included), a real SQLite ledger, and their /metrics, /healthz and /readyz read over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from gpuquota.cli import app
from gpuquota.errors import UserError
from gpuquota.kube.leader import lease_collection
from gpuquota.ledger import ReservationState, open_ledger
from tests.kube.apiserver import ApiState, api_server, with_kube_system
from tests.ledger.builders import reservation
from tests.reconcile.objects import job, job_complete

NS = "acme-train"
LEASE = f"{lease_collection('gpuquota')}/gq-reconciler"


class Replica:
    """One ``gpuquota reconcile`` process; its log goes to a file so the test can read it while it runs."""

    def __init__(self, name: str, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        env = {**os.environ, "POD_NAME": name}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from gpuquota.cli import main; main()", "reconcile", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.port = int(_wait_for(lambda: re.search(r"serving /metrics on 127\.0\.0\.1:(\d+)", self.log()), 20)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = s.name + (
                    "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}" if s.labels else ""
                )
                out[key] = s.value
        return out

    def leads(self) -> bool:
        return self.metrics()["gpuquota_reconciler_leader"] == 1.0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            self._log.close()


def _wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ApiState, str, Path]]:
    state = with_kube_system(ApiState())
    token = tmp_path / "token"
    token.write_text(state.token)
    with api_server(state) as url:
        yield state, url, token


def test_two_replicas_one_reconciles_and_the_other_takes_over_on_shutdown(
    cluster: tuple[ApiState, str, Path], tmp_path: Path
) -> None:
    state, url, token = cluster
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    admitted = datetime.now(UTC) - timedelta(hours=1)
    ledger = open_ledger(ledger_url)
    ledger.reserve(reservation("uid-done", name="done", namespace=NS, when=admitted), admitted)
    ledger.reserve(reservation("uid-ghost", name="ghost", namespace=NS, when=admitted), admitted)
    ledger.close()
    started, ended = admitted + timedelta(minutes=1), admitted + timedelta(minutes=11)
    state.put(f"/apis/batch/v1/namespaces/{NS}/jobs/done", job("done", NS, admitted, **job_complete(started, ended)))
    args = [
        "--ledger", ledger_url, "--api-server", url, "--token-file", str(token),
        "--leader-elect", "--lease-name", "gq-reconciler", "--lease-namespace", "gpuquota",
        "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.2", "--interval", "0.2",
        "--metrics-port", "0", "--metrics-host", "127.0.0.1", "--log-level", "info",
    ]  # fmt: skip
    a = Replica("pod-a", args, tmp_path)
    b: Replica | None = None
    try:
        _wait_for(a.leads)
        assert state.objects[LEASE]["spec"]["holderIdentity"] == "pod-a"
        b = Replica("pod-b", args, tmp_path)
        settled = "gpuquota_reconciler_transitions_total{transition=settled}"
        expired = "gpuquota_reconciler_transitions_total{transition=expired}"
        _wait_for(lambda: a.metrics()[settled] == 1 and a.metrics()[expired] == 1)
        time.sleep(0.6)  # b has tried the Lease several times by now
        assert not b.leads()
        assert b.metrics()["gpuquota_reconciler_last_sync_timestamp_seconds"] == 0  # a follower never reconciles
        assert a.metrics()["gpuquota_reconciler_last_sync_timestamp_seconds"] > 0
        assert a.stop() == 0
        _wait_for(b.leads, timeout=2.5)  # a released the Lease: no wait for the 3 s lease to expire
        spec = state.objects[LEASE]["spec"]
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("pod-b", 1)
        _wait_for(lambda: b.metrics()["gpuquota_reconciler_last_sync_timestamp_seconds"] > 0)
        assert b.metrics()[settled] == 0  # nothing moved twice
    finally:
        a.stop()
        if b is not None:
            assert b.stop() == 0
    assert state.objects[LEASE]["spec"]["holderIdentity"] is None
    ledger = open_ledger(ledger_url)
    try:
        states = {r.request_uid: r.state for r in ledger.reservations()}
    finally:
        ledger.close()
    assert states == {"uid-done": ReservationState.SETTLED, "uid-ghost": ReservationState.EXPIRED}


def test_without_leader_election_it_reconciles_at_once(cluster: tuple[ApiState, str, Path], tmp_path: Path) -> None:
    _, url, token = cluster
    args = ["--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--api-server", url, "--token-file", str(token),
            "--interval", "0.2", "--metrics-port", "0", "--metrics-host", "127.0.0.1"]  # fmt: skip
    replica = Replica("solo", args, tmp_path)  # --api-server given: election is off unless asked for
    try:
        assert replica.leads()
        _wait_for(lambda: replica.metrics()["gpuquota_reconciler_last_sync_timestamp_seconds"] > 0)
    finally:
        assert replica.stop() == 0
    assert "campaigning" not in replica.log()


def test_the_real_command_answers_its_probes(cluster: tuple[ApiState, str, Path], tmp_path: Path) -> None:
    """``gpuquota reconcile`` as a process, leader-elected against the local API server: /healthz and /readyz are
    200 on the metrics port, and stay so while it leads and passes run."""
    _, url, token = cluster
    args = ["--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--api-server", url, "--token-file", str(token),
            "--leader-elect", "--lease-name", "gq-reconciler", "--lease-namespace", "gpuquota",
            "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.2", "--interval", "0.2",
            "--metrics-port", "0", "--metrics-host", "127.0.0.1"]  # fmt: skip
    replica = Replica("pod-a", args, tmp_path)
    try:
        base = f"http://127.0.0.1:{replica.port}"
        healthz = httpx.get(f"{base}/healthz", timeout=5)
        assert healthz.status_code == 200, healthz.text
        assert healthz.json()["status"] == "ok"
        _wait_for(replica.leads)
        _wait_for(lambda: replica.metrics()["gpuquota_reconciler_last_sync_timestamp_seconds"] > 0)
        healthz = httpx.get(f"{base}/healthz", timeout=5)
        assert (healthz.status_code, healthz.json()["leader"]) == (200, True)
        assert healthz.json()["loop_heartbeat_age_s"] < 5
        readyz = httpx.get(f"{base}/readyz", timeout=5)
        assert (readyz.status_code, readyz.json()["status"]) == (200, "ok")
    finally:
        assert replica.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leader-elect"], "needs the Lease's namespace"),
        (["--leader-elect", "--lease-namespace", "gq", "--renew-deadline", "20"], "renew deadline < lease duration"),
        (["--metrics-port", "70000"], "--metrics-port must be"),
        (["--interval", "30", "--stuck-after", "20"], "--stuck-after must be longer than --interval"),
    ],
)
def test_bad_election_options_are_user_errors(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setattr("gpuquota.commands.reconcile.pod_namespace", lambda: None)
    base = ["reconcile", "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--api-server", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, [*base, *args])
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception)
    assert not (tmp_path / "l.db").exists()  # refused before anything was opened
