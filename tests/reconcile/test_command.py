"""``gpuquota reconcile`` end to end: the real Kubernetes client against a small recorded API server on loopback,
and a real SQLite ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from gpuquota.cli import app
from gpuquota.clusters import KUBE_SYSTEM
from gpuquota.errors import UserError
from gpuquota.ledger import ReservationState, open_ledger
from tests.ledger.builders import reservation
from tests.reconcile.objects import job, job_complete

NS = "acme-train"


class RecordedApi(BaseHTTPRequestHandler):
    """Serves lists of recorded objects by path; an unknown collection is a 404 (a CRD not installed)."""

    collections: ClassVar[dict[str, list[dict[str, Any]]]] = {}
    seen: ClassVar[list[str]] = []
    cluster_uid: ClassVar[str] = "uid-of-kube-system"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.seen.append(path)
        if path == KUBE_SYSTEM:  # the cluster's identity on the ledger
            self._send(200, {"kind": "Namespace", "metadata": {"name": "kube-system", "uid": self.cluster_uid}})
            return
        if path not in self.collections:
            self._send(404, {"kind": "Status", "status": "Failure", "message": "not found", "code": 404})
            return
        self._send(200, {"kind": "List", "metadata": {"resourceVersion": "42"}, "items": self.collections[path]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordedApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reconcile_once_settles_and_expires(api: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    now = datetime.now(UTC)
    admitted = now - timedelta(hours=1)
    ledger = open_ledger(url)
    ledger.reserve(reservation("uid-done", name="done", namespace=NS, when=admitted), admitted)
    ledger.reserve(reservation("uid-ghost", name="ghost", namespace=NS, when=admitted), admitted)
    ledger.close()
    started, ended = admitted + timedelta(minutes=1), admitted + timedelta(minutes=11)
    RecordedApi.collections = {
        f"/apis/batch/v1/namespaces/{NS}/jobs": [job("done", NS, admitted, **job_complete(started, ended))],
        f"/api/v1/namespaces/{NS}/pods": [],
    }
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuquota.cli import main; main()", "reconcile", "--once", "--ledger", url,
         "--api-server", api, "--log-level", "warning"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 reservation(s) changed, 0 error(s)" in proc.stdout
    ledger = open_ledger(url)
    try:
        states = {r.request_uid: (r.state, r.actual_operations) for r in ledger.reservations()}
    finally:
        ledger.close()
    assert states == {
        "uid-done": (ReservationState.SETTLED, pytest.approx(1e15 * 600)),
        "uid-ghost": (ReservationState.EXPIRED, 0.0),
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace", "-1"], "--grace must be"),
        (["--interval", "0"], "--interval"),
        (["--log-level", "loud"], "--log-level"),
        (["--ledger", "mysql://x/y"], "unsupported ledger URL"),
        (["--policy", "no-such-profile"], "no-such-profile"),
    ],
)
def test_bad_options_are_user_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["reconcile", "--once", *args])
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception)
