"""Fixtures: a test CA, one real webhook (TLS, SQLite ledger, small-cap test profile) per test module, and the
test profile and tenants loaded in-process (``live``) for the handler and judge without a server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuquota.admission.live import LiveConfig
from gpuquota.ledger import ReservationRecord, open_ledger
from tests.admission.pki import TestCA, make_ca
from tests.admission.reviews import TRAINING_OPERATOR
from tests.admission.serverproc import TEST_POLICY, Server, start_server, tenants_yaml, wait_for
from tests.kube.apiserver import ApiState, api_server, with_kube_system
from tests.ledger.conftest import postgres_server_url  # noqa: F401 - re-exported fixture

TRUSTED_OPERATOR = "ci-operator@example.com"  # named with --trusted-controller on the test server
# Operators are trusted only by name (the chart names the upstream ones): the test servers name these.
TRUSTED = ("--trusted-controller", TRUSTED_OPERATOR, "--trusted-controller", TRAINING_OPERATOR)


@pytest.fixture
def live(tmp_path: Path) -> LiveConfig:
    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(tenants_yaml())
    return LiveConfig(str(policy), tenants)


@dataclass
class Setup:
    root: Path
    ca: TestCA
    policy: Path
    tenants: Path
    tls: tuple[Path, Path]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("webhook")
    ca = make_ca(root / "pki", "main")
    policy = root / "policy.yaml"
    policy.write_text(TEST_POLICY)
    tenants = root / "tenants.yaml"
    tenants.write_text(tenants_yaml())
    return Setup(root, ca, policy, tenants, ca.issue(root / "pki", "serving"))


@pytest.fixture(scope="module")
def webhook(setup: Setup) -> Iterator[Server]:
    server = start_server(setup.root / "srv", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                          ca_file=setup.ca.ca_file, extra=TRUSTED)
    try:
        yield server
    finally:
        server.stop()


def active(ledger_url: str) -> list[ReservationRecord]:
    ledger = open_ledger(ledger_url)
    try:
        return ledger.active_reservations()
    finally:
        ledger.close()


def active_in(ledger_url: str, namespace: str) -> list[ReservationRecord]:
    return [r for r in active(ledger_url) if r.workload.namespace == namespace]


def namespace_object(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Namespace as the API server returns it (the cluster view reads tenant and jurisdiction labels from it)."""
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "labels": labels}}


@contextmanager
def cluster_server(setup: Setup, directory: Path, state: ApiState) -> Iterator[Server]:
    """A real webhook with its cluster view on, watching a local API server that serves ``state``; ready on entry."""
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "token"
    token.write_text(state.token)
    with api_server(with_kube_system(state)) as url:
        server = start_server(directory / "srv", policy=setup.policy, tenants=setup.tenants, tls=setup.tls,
                              ca_file=setup.ca.ca_file,
                              extra=("--kube", "in-cluster", "--api-server", url, "--token-file", str(token), *TRUSTED))
        try:
            assert wait_for(lambda: server.client().get("/readyz").status_code == 200)
            yield server
        finally:
            server.stop()
