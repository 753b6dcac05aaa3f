"""No overrun under races, over HTTP: several server processes share one ledger (PostgreSQL, or one SQLite file)
and hundreds of concurrent reserving requests compete for one tenant's cap."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.admission.conftest import Setup, active_in
from tests.admission.reviews import H100_TPP, gpu_pod, review
from tests.admission.serverproc import Server, start_server
from tests.pgserver import fresh_ledger_database

StartServers = Callable[[str, int], list[Server]]
CAP_GPUS = 16  # the test profile's tier-2 tenant cap
REQUESTS = 240


async def _fire(servers: list[Server], bodies: list[dict[str, object]], ca_file: Path) -> list[dict[str, object]]:
    """All bodies at once, spread round-robin over the servers; returns the responses in order."""
    context = ssl.create_default_context(cafile=str(ca_file))
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    clients = [httpx.AsyncClient(base_url=s.base_url, verify=context, timeout=60.0, limits=limits) for s in servers]
    try:
        async def one(index: int, body: dict[str, object]) -> dict[str, object]:
            response = await clients[index % len(clients)].post("/validate", content=orjson.dumps(body))
            assert response.status_code == 200, response.text
            result: dict[str, object] = response.json()["response"]
            return result

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    finally:
        for client in clients:
            await client.aclose()


def _assert_exact_fill(servers: list[Server], ledger_url: str, namespace: str, ca_file: Path) -> None:
    bodies = [review(gpu_pod(f"racer-{i}", namespace, 1)) for i in range(REQUESTS)]
    answers = asyncio.run(_fire(servers, bodies, ca_file))
    allowed = {str(a["uid"]) for a in answers if a["allowed"]}
    denied = [a for a in answers if not a["allowed"]]
    assert len(allowed) == CAP_GPUS  # exactly as many as fit: no overrun, no needless refusal
    assert all("tenant-cap" in str(a["status"]) for a in denied), denied[:3]
    reservations = active_in(ledger_url, namespace)
    assert sorted(r.request_uid for r in reservations) == sorted(allowed)
    assert sum(r.tpp for r in reservations) <= CAP_GPUS * H100_TPP


@pytest.fixture
def servers_on(setup: Setup, tmp_path: Path) -> Iterator[StartServers]:
    started: list[Server] = []

    def start(ledger_url: str, count: int) -> list[Server]:
        for index in range(count):
            started.append(start_server(tmp_path / f"srv{index}", ledger_url=ledger_url, policy=setup.policy,
                                        tenants=setup.tenants, tls=setup.tls, ca_file=setup.ca.ca_file,
                                        name=f"server{index}"))
        return list(started)

    yield start
    for server in started:
        server.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_four_servers_on_one_postgresql_never_overrun(servers_on: StartServers, setup: Setup,
                                                       postgres_server_url: str) -> None:
    with fresh_ledger_database(postgres_server_url) as url:
        servers = servers_on(url, 4)
        _assert_exact_fill(servers, url, "race", setup.ca.ca_file)
        assert all(s.alive() for s in servers)


@pytest.mark.slow
def test_three_servers_on_one_sqlite_file_never_overrun(servers_on: StartServers, setup: Setup, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    servers = servers_on(url, 3)
    _assert_exact_fill(servers, url, "race", setup.ca.ca_file)
    assert all(s.alive() for s in servers)
