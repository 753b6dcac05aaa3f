"""Assemble and run the webhook: configuration, ledger, caches, TLS, background watchers, uvicorn.

One process, one event loop (uvloop, httptools, no access log: per-request logging costs about a quarter of the
throughput). Background work — file reloads, the cached ledger ping behind ``/readyz``, the Kubernetes watches —
never runs on the request path.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

import uvicorn
from starlette.types import ASGIApp

from gpuquota.admission.app import (
    MAX_BODY_BYTES,
    LedgerRunner,
    Readiness,
    create_app,
    run_inline,
    thread_pool_runner,
)
from gpuquota.admission.audit import AuditLog
from gpuquota.admission.claims import ClaimCache
from gpuquota.admission.handler import Admission
from gpuquota.admission.ledger_access import DeferredLedger
from gpuquota.admission.live import FileWatch, LiveConfig
from gpuquota.admission.metrics import WebhookMetrics
from gpuquota.admission.metrics_auth import KubernetesMetricsAuth
from gpuquota.admission.metrics_listener import create_metrics_app
from gpuquota.admission.namespaces import NamespaceCache
from gpuquota.admission.tls import CertPair, ClientVerification, generate_self_signed, reload_cert_chain
from gpuquota.admission.transport import ConnectionLimits, TransportStats, guarded_loop_factory, guarded_protocol
from gpuquota.clusters import cluster_identity, cluster_name_of
from gpuquota.errors import UserError
from gpuquota.inventory import ClusterInventory, run_node_watch
from gpuquota.kube import KubeApi, KubeClient, KubeSource
from gpuquota.kube.config import in_pod
from gpuquota.kube.health import WatchHealth
from gpuquota.ledger import LedgerError, LedgerUnavailable, open_ledger
from gpuquota.ledger.store import SqlLedger
from gpuquota.policy import Policy
from gpuquota.workloads import DEFAULT_ALL_DEVICES, GpuNameError, GpuResources, gpu_resources
from gpuquota.workloads.models import RESOLUTIONS

log = logging.getLogger("gpuquota.admission.server")

DEFAULT_POLICY: Final = "ai-diffusion-2025"
DEFAULT_PORT: Final = 8443
DEFAULT_DECISION_RETENTION_DAYS: Final = 7 * 366  # compliance records are kept long; aggregation bounds growth
PRUNE_INTERVAL_S: Final = 3600.0
KubeMode = Literal["auto", "in-cluster", "none"]
MetricsAuthMode = Literal["none", "kubernetes"]


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "0.0.0.0"  # noqa: S104 - a webhook is reached through its Service, on the pod's address
    port: int = DEFAULT_PORT
    ledger_url: str | None = None  # None: sqlite in the state dir
    policy: str = DEFAULT_POLICY
    tenants: Path | None = None
    catalog: Path | None = None  # an operator's catalog file merged over the bundled rows (reloaded on change)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    audit_log: str | None = "-"
    kube: KubeMode = "auto"
    state_dir: Path = Path("var")
    reload_interval_s: float = 2.0
    ping_interval_s: float = 5.0
    log_level: str = "info"
    ledger_pool: int = 8
    ledger_threads: int | None = None  # None: inline for SQLite, ``ledger_pool`` threads for PostgreSQL
    max_body_bytes: int = MAX_BODY_BYTES
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
    api_server: str | None = None  # reach an API server from outside a cluster (development, tests)
    token_file: Path | None = None
    ca_file: Path | None = None  # the API server's CA (a development cluster's own)
    kubeconfig: Path | None = None  # else $KUBECONFIG, else the pod's service account (gpuquota.kube.config)
    context: str | None = None
    trusted_controllers: tuple[str, ...] = ()  # users whose owner claims are believed, beyond the built-in ones
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    metrics_port: int | None = None  # None: /metrics on the webhook port (local use); else its own listener
    metrics_auth: MetricsAuthMode = "none"  # "kubernetes": TokenReview + SubjectAccessReview on the metrics port
    client_ca: Path | None = None  # mutual TLS on the webhook port: clients need a certificate from this CA
    decision_retention_days: float | None = DEFAULT_DECISION_RETENTION_DAYS  # None: keep decision records forever
    gpu_resources: tuple[str, ...] = ()  # --gpu-resource entries added to the bundled table
    gpu_device_classes: tuple[str, ...] = ()  # --gpu-device-class entries
    dra_all_devices: int = DEFAULT_ALL_DEVICES  # GPUs a DRA "All" request or an unreadable claim counts as
    cluster_name: str | None = None  # --cluster-name (None: the default name, and no name claimed explicitly)

    def resolved_ledger_url(self) -> str:
        return self.ledger_url or f"sqlite:///{self.state_dir / 'ledger.sqlite3'}"


def _kube(settings: ServeSettings) -> KubeApi | None:
    """``none``: no cluster. ``auto``: the cluster the flags or ``$KUBECONFIG`` name, else the pod's own, else none.
    ``in-cluster``: the same, but finding none is an error."""
    if settings.kube == "none":
        return None
    source = KubeSource(settings.kubeconfig, settings.context, settings.api_server, settings.token_file,
                        settings.ca_file)
    if settings.kube == "auto" and not source.explicit() and not in_pod():
        return None
    return KubeClient.from_source(source)


def _gpu_table(settings: ServeSettings) -> GpuResources:
    try:
        return gpu_resources(settings.gpu_resources, settings.gpu_device_classes)
    except GpuNameError as exc:
        raise UserError(str(exc)) from None


class Webhook:
    """Everything one server process holds. Built by ``build`` so tests can drive it without uvicorn."""

    def __init__(self, settings: ServeSettings) -> None:
        table = _gpu_table(settings)  # bad table entries stop the start before anything is opened
        self.settings = settings
        self.readiness = Readiness()
        self._live_holder: list[LiveConfig] = []
        self.cluster = cluster_name_of(settings.cluster_name)
        self.metrics = WebhookMetrics(lambda: self._live_holder[0].current.known_tenants if self._live_holder
                                      else frozenset(), cluster=settings.cluster_name)
        self.live = LiveConfig(settings.policy, settings.tenants, on_reload_failed=self._reload_failed,
                               on_policy=self._policy_loaded, on_tenants=self.metrics.tenants_changed,
                               catalog_path=settings.catalog)
        self._live_holder.append(self.live)
        self.readiness.policy_loaded = True
        url = settings.resolved_ledger_url()
        if url.startswith("sqlite:///"):
            settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.kube = _kube(settings)
        self.ledger = DeferredLedger(lambda: self._open_ledger(url))
        try:
            self.ledger.open()  # a malformed URL or a refused cluster claim fails the start; an unreachable one not
        except LedgerError as exc:
            raise UserError(f"--ledger: {exc}") from None
        self.is_sqlite = url.startswith("sqlite:///")
        self.audit = AuditLog(settings.audit_log)
        self.stop = threading.Event()
        self.kube_health = self._watch_health()
        self.namespaces: NamespaceCache | None = None
        self.inventory: ClusterInventory | None = None
        if self.kube is not None:
            self.namespaces = NamespaceCache()
            cache = self.namespaces
            self.readiness.namespaces_synced = lambda: cache.synced
            self.inventory = ClusterInventory(self.live.current.catalog, table)
        inventory = self.inventory
        self.metrics.watch_capacity(
            lambda: [] if inventory is None else [(r.model, r.gpu_class, r.tpp, r.gpus) for r in inventory.capacity()],
            lambda: 0 if inventory is None else inventory.unlabelled_nodes(),
        )
        self.admission = Admission(self.live, self.ledger, self.metrics, self.audit, namespaces=self.namespaces,
                                   inventory_models=inventory.models if inventory is not None else None,
                                   trusted_controllers=settings.trusted_controllers, kube=self.kube,
                                   gpu_resources=table, all_devices=settings.dra_all_devices,
                                   claims=ClaimCache() if self.kube is not None else None, cluster=self.cluster)
        self.executor: ThreadPoolExecutor | None = None
        runner: LedgerRunner = run_inline
        threads = settings.ledger_threads
        if threads is None:
            threads = 0 if self.is_sqlite else settings.ledger_pool
        if threads > 0:
            self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ledger")
            runner = thread_pool_runner(self.executor)
        self.app = create_app(self.admission, self.readiness, runner, settings.max_body_bytes,
                              serve_metrics=settings.metrics_port is None)
        self.transport = TransportStats()
        self.metrics_transport = TransportStats()
        self.metrics_auth = self._metrics_auth()
        self.metrics_app: ASGIApp | None = None
        if settings.metrics_port is not None:
            self.metrics_app = create_metrics_app(self.metrics.registry, self.readiness, self.metrics_auth)
        self._watch_internals()
        self.cert = self._serving_cert()

    def _open_ledger(self, url: str) -> SqlLedger:
        """The ledger, claimed for this cluster: its name, and its kube-system uid read now (an API server that
        cannot be reached yet leaves the ledger unopened, like a database that cannot: GPU admissions fail closed)."""
        try:
            identity = cluster_identity(self.settings.cluster_name, self.kube)
        except UserError as exc:
            raise LedgerUnavailable(str(exc)) from None
        return open_ledger(url, pool_size=self.settings.ledger_pool, identity=identity)

    def _serving_cert(self) -> CertPair | None:
        settings = self.settings
        if settings.insecure:
            if settings.client_ca is not None:
                raise UserError("--client-ca needs TLS (it cannot go with --insecure)")
            return None
        if settings.tls_cert is not None and settings.tls_key is not None:
            cert = CertPair(settings.tls_cert, settings.tls_key)
        elif settings.tls_cert is None and settings.tls_key is None:
            cert = generate_self_signed(settings.state_dir, ("localhost", "127.0.0.1", *settings.extra_hosts))
        else:
            raise UserError("--tls-cert and --tls-key go together (or pass --insecure for plain HTTP)")
        for path in (cert.cert, cert.key, *((settings.client_ca,) if settings.client_ca is not None else ())):
            if not path.is_file():
                raise UserError(f"TLS file {path} does not exist")
        return cert

    def _metrics_auth(self) -> KubernetesMetricsAuth | None:
        settings = self.settings
        if settings.metrics_auth == "none":
            return None
        if settings.metrics_port is None:
            raise UserError("--metrics-auth kubernetes needs --metrics-port (metrics on a port of their own)")
        if self.kube is None:
            raise UserError("--metrics-auth kubernetes needs cluster access (run in a pod, or --kube in-cluster "
                            "with --api-server) to send TokenReviews and SubjectAccessReviews")
        return KubernetesMetricsAuth(self.kube.create)

    def _watch_health(self) -> WatchHealth:
        """Where the caches' list-and-watch loops report: ``/readyz`` and ``gpuquota_kube_watch_*`` read it."""
        health = WatchHealth()
        self.metrics.registry.register(health.collector())
        self.readiness.kube_problems = health.problems
        return health

    def _watch_internals(self) -> None:
        """Metrics read at scrape time: the bounded caches and each listener's connections."""
        caches = [RESOLUTIONS.stats, self.admission.trust.owners.cache.stats, self.admission.trust.lws.cache.stats]
        if self.metrics_auth is not None:
            caches.append(self.metrics_auth.cache.stats)
        self.metrics.watch_caches(caches)
        self.metrics.watch_transport(self.transport, "webhook")
        if self.settings.metrics_port is not None:
            self.metrics.watch_transport(self.metrics_transport, "metrics")

    def _reload_failed(self, what: str, message: str) -> None:
        self.metrics.errors.labels("reload_failed").inc()

    def _policy_loaded(self, policy: Policy) -> None:
        self.metrics.set_policy(policy.name, policy.version)

    # --- background work --------------------------------------------------------------------------------------

    def start_threads(self) -> None:
        health = self.kube_health
        if self.kube is not None and self.namespaces is not None:
            kube, cache = self.kube, self.namespaces
            threading.Thread(target=cache.run, args=(kube, self.stop), kwargs={"health": health},
                             name="namespace-watch", daemon=True).start()
        if self.kube is not None and isinstance(self.admission.judge.claims, ClaimCache):  # the DRA claims pods name
            self.admission.judge.claims.start(self.kube, self.stop)
        if self.kube is not None and self.inventory is not None:
            threading.Thread(target=run_node_watch, args=(self.kube, self.inventory, self.stop),
                             kwargs={"health": health}, name="node-watch", daemon=True).start()

    def check_ledger(self) -> None:
        """The cached ping behind ``/readyz`` and ``gpuquota_ledger_up`` (probes never hit the database)."""
        try:
            if not self.ledger.open():
                self.ledger.ping()  # raises with the reason it cannot open
            self.ledger.ping()
        except LedgerError as exc:
            self.readiness.ledger_ok = False
            self.readiness.ledger_error = str(exc)
            self.metrics.ledger_up.set(0)
            return
        self.readiness.ledger_ok = True
        self.readiness.ledger_error = ""
        self.metrics.ledger_up.set(1)
        try:  # one COUNT on the partial index of active reservations, never a listing of them
            self.metrics.active_reservations = self.ledger.count_active()
        except LedgerError:
            self.metrics.active_reservations = None  # unknown: no sample rather than a stale or made-up one

    async def watch_ledger(self) -> None:
        pruned_at = -PRUNE_INTERVAL_S
        while True:
            await asyncio.to_thread(self.check_ledger)
            if time.monotonic() - pruned_at >= PRUNE_INTERVAL_S:
                pruned_at = time.monotonic()
                await asyncio.to_thread(self.prune_decisions)
            await asyncio.sleep(self.settings.ping_interval_s)

    def prune_decisions(self) -> None:
        """Drop decision records past ``--decision-retention-days`` (every replica may: the deletes are idempotent)."""
        days = self.settings.decision_retention_days
        ledger = self.ledger.opened
        if days is None or not isinstance(ledger, SqlLedger):
            return
        try:
            removed = ledger.prune_decisions(datetime.now(UTC) - timedelta(days=days))
        except LedgerError as exc:
            log.warning("could not prune decision records older than %g days (retried in an hour): %s", days, exc)
            return
        if removed:
            log.warning("pruned %d decision records older than %g days", removed, days)

    async def freeze_caches(self, timeout_s: float = 120.0) -> None:
        """Once the caches are filled, move everything alive to the garbage collector's permanent generation.

        With 10,000 nodes and 5,000 namespaces cached, a full collection scans ~10⁵ objects (≈35 ms on a small VM)
        and lands on some unlucky request as a latency spike. Frozen objects are still freed by reference counting
        when a cache drops them; only the cycle detector stops re-scanning them.
        """
        waited = 0.0
        while waited < timeout_s and not self._caches_synced():
            await asyncio.sleep(0.2)
            waited += 0.2
        gc.collect()
        gc.freeze()
        log.info("caches synced; %d objects frozen out of garbage collection", gc.get_freeze_count())

    def _caches_synced(self) -> bool:
        namespaces_ok = self.namespaces is None or self.namespaces.synced
        inventory_ok = self.inventory is None or self.inventory.synced.is_set()
        return namespaces_ok and inventory_ok

    async def watch_files(self, contexts: list[ssl.SSLContext], clients: ClientVerification | None = None) -> None:
        """Reloads: policy and tenants files, the certificate into every listener's context, and the client CA
        bundle of mutual TLS (``clients``) with it."""
        cert_watches = [FileWatch(p) for p in (self.cert.cert, self.cert.key)] if self.cert is not None else []
        ca_watch = FileWatch(clients.client_ca) if clients is not None else None
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            self.audit.flush()
            await asyncio.to_thread(self.live.check)
            if contexts and self.cert is not None:
                changed = [w.changed() for w in cert_watches]  # look at both, so both stamps move on
                if any(changed):
                    for context in contexts:
                        self._reload_cert(context, self.cert)
                if clients is not None and ca_watch is not None and (ca_watch.changed() or any(changed)):
                    self._reload_clients(clients)

    def _reload_clients(self, clients: ClientVerification) -> None:
        try:
            clients.reload()
        except (OSError, ssl.SSLError) as exc:
            self.metrics.errors.labels("reload_failed").inc()
            log.error("rejected the new client CA bundle %s (keeping the current one): %s", clients.client_ca, exc)
        else:
            log.warning("client CA bundle reloaded from %s", clients.client_ca)

    def _reload_cert(self, context: ssl.SSLContext, pair: CertPair) -> None:
        try:
            reload_cert_chain(context, pair)
        except (OSError, ssl.SSLError) as exc:
            self.metrics.errors.labels("reload_failed").inc()
            log.error("rejected the new TLS certificate/key (keeping the current one): %s", exc)
        else:
            log.warning("TLS certificate reloaded from %s", pair.cert)

    def close(self) -> None:
        self.stop.set()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.ledger.close()
        self.audit.close()


class _SecondaryServer(uvicorn.Server):
    """A second listener in the same loop: the main server owns the signals and stops this one after itself."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn_config(webhook: Webhook, app: ASGIApp | None = None, port: int | None = None,
                    stats: TransportStats | None = None) -> uvicorn.Config:
    s = webhook.settings
    return uvicorn.Config(
        app or webhook.app,
        host=s.host,
        port=port or s.port,
        ssl_certfile=str(webhook.cert.cert) if webhook.cert is not None else None,
        ssl_keyfile=str(webhook.cert.key) if webhook.cert is not None else None,
        # mutual TLS on the webhook port only (the kubelet's probes and Prometheus use the metrics port)
        ssl_ca_certs=str(s.client_ca) if s.client_ca is not None and app is None else None,
        ssl_cert_reqs=ssl.CERT_REQUIRED if s.client_ca is not None and app is None else ssl.CERT_NONE,
        access_log=False,
        log_level=s.log_level,
        lifespan="off",
        # httptools, one write per response (≈ +25 % reviews/s over TLS), read deadlines and a connection cap
        http=guarded_protocol(s.limits, stats or webhook.transport),
        loop="none",
        server_header=False,
        proxy_headers=False,  # the API server calls the pod directly; rewriting client addresses costs throughput
        timeout_graceful_shutdown=5,
    )


def _load(webhook: Webhook, config: uvicorn.Config) -> None:
    try:
        config.load()
    except (ssl.SSLError, OSError) as exc:
        pair = f"{webhook.cert.cert}, {webhook.cert.key}" if webhook.cert is not None else "?"
        raise UserError(f"cannot load the TLS certificate/key ({pair}): {exc}") from None


async def _serve(webhook: Webhook) -> None:
    config = _uvicorn_config(webhook)
    _load(webhook, config)
    server = uvicorn.Server(config)
    configs = [config]
    secondary: _SecondaryServer | None = None
    if webhook.metrics_app is not None:
        metrics_config = _uvicorn_config(webhook, webhook.metrics_app, webhook.settings.metrics_port,
                                         webhook.metrics_transport)
        _load(webhook, metrics_config)
        configs.append(metrics_config)
        secondary = _SecondaryServer(metrics_config)
    webhook.start_threads()
    webhook.check_ledger()
    contexts = [c.ssl for c in configs if c.ssl is not None]
    clients = None
    if webhook.settings.client_ca is not None and webhook.cert is not None and config.ssl is not None:
        clients = ClientVerification(config.ssl, webhook.cert, webhook.settings.client_ca)
    tasks = [asyncio.create_task(webhook.watch_ledger()),
             asyncio.create_task(webhook.watch_files(contexts, clients)),
             asyncio.create_task(webhook.freeze_caches())]
    metrics_task = asyncio.create_task(secondary.serve()) if secondary is not None else None
    scheme = "http" if webhook.cert is None else "https"
    log.warning("starting gpuquota webhook on %s://%s:%d (policy %s %s, ledger %s)", scheme, webhook.settings.host,
                webhook.settings.port, webhook.live.current.policy.name, webhook.live.current.policy.version,
                "sqlite" if webhook.is_sqlite else "postgresql")
    try:
        await server.serve()
    finally:
        if secondary is not None and metrics_task is not None:  # the metrics port closes after the webhook port
            secondary.should_exit = True
            await asyncio.wait([metrics_task], timeout=5)
            tasks.append(metrics_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run(settings: ServeSettings) -> None:
    """Serve until SIGINT/SIGTERM. Bad configuration raises ``UserError`` before anything listens."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    webhook = Webhook(settings)
    try:
        with asyncio.Runner(loop_factory=guarded_loop_factory(settings.limits)) as runner:
            runner.run(_serve(webhook))
    finally:
        webhook.close()
