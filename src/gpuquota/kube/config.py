"""Where the API server is and who we are to it, read by the official ``kubernetes`` package.

gpuquota does not parse kubeconfig files or service-account mounts itself: the package's loaders do (contexts,
``KUBECONFIG`` with several files, client certificates inline or on disk, ``exec`` credential plugins, ``tokenFile``,
``proxy-url``, ``tls-server-name``, ``insecure-skip-tls-verify``; in a pod the projected service-account token). What
they fill — a ``kubernetes.client.Configuration`` — is then read into an ``Endpoint`` (where and how to connect)
and a ``Credentials`` object that hands out the ``Authorization`` header and renews it:

- on every request the package's own refresh hook runs (in a pod it re-reads the projected token each minute; an
  exec plugin's token is re-run when its ``expirationTimestamp`` passes);
- a token kept in a file (``tokenFile``, ``--token-file``) is re-read when the file changes, as client-go does;
- a 401 renews everything once (re-runs the exec plugin, re-reads every file) and the request is tried again:
  a credential revoked or rotated early recovers without a restart.

Which source is used, in order: ``--api-server`` (with ``--token-file``/``--ca-file``; a kubeconfig made on the fly),
``--kubeconfig``, ``$KUBECONFIG``, the pod's service account, ``~/.kube/config``. ``--context`` picks a context of
the kubeconfig in use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gpuquota.errors import UserError

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG: Final = Path("~/.kube/config")
RENEW_AFTER_401_S: Final = 5.0  # at most one forced renewal per this many seconds (an exec plugin is a process)
TOKEN_FILE_CHECK_S: Final = 1.0  # how often a token file's mtime is looked at


class KubeConfigError(UserError):
    """No usable credentials (not in a cluster, no kubeconfig, a broken one): the message says which and where."""


@dataclass(frozen=True, slots=True)
class KubeSource:
    """What the commands' flags say about the cluster. All empty: ``$KUBECONFIG``, in-cluster, ``~/.kube/config``."""

    kubeconfig: Path | None = None
    context: str | None = None
    api_server: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False

    def check(self) -> None:
        """Flags that cannot go together are a ``KubeConfigError`` before anything is read."""
        if self.api_server is None:
            for flag, value in (("--token-file", self.token_file), ("--ca-file", self.ca_file)):
                if value is not None:
                    raise KubeConfigError(f"{flag} needs --api-server")
            return
        if self.kubeconfig is not None or self.context is not None:
            raise KubeConfigError("--api-server excludes --kubeconfig and --context")
        if not self.api_server.startswith(("http://", "https://")):
            raise KubeConfigError(f"--api-server must be an http(s) URL, not {self.api_server!r}")

    def explicit(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether the flags or ``$KUBECONFIG`` name a cluster (as opposed to "whatever this pod is in")."""
        env = os.environ if environ is None else environ
        return bool(self.api_server or self.kubeconfig or self.context or env.get("KUBECONFIG"))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach the API server: the TLS material and proxy the transport is built from."""

    host: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    tls_server_name: str | None = None
    proxy: str | None = None


def in_pod(environ: Mapping[str, str] | None = None, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").exists()


def _config_exception() -> type[Exception]:
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415 - a heavy import, done late

    return ConfigException


class Credentials:
    """The loaded configuration of one source: ``endpoint`` and ``authorization()``, renewed as the module says.

    Thread-safe: watches and requests of several threads share one instance.
    """

    def __init__(self, load: Callable[[], tuple[Any, list[Path]]], description: str,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self.description = description
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._forced_at = float("-inf")
        self._checked_at = float("-inf")
        self.configuration: Any = None
        self._token_files: dict[Path, float | None] = {}
        self.renew()

    def renew(self) -> None:
        """Load the source again (exec plugins re-run, files re-read). A failure is a ``KubeConfigError``."""
        with self._lock:
            self._renew_locked()

    def _renew_locked(self) -> None:
        try:
            configuration, token_files = self._load()
        except (_config_exception(), OSError, ValueError) as exc:
            raise KubeConfigError(f"{self.description}: {exc}") from None
        self.configuration = configuration
        self._token_files = {path: _mtime(path) for path in token_files}
        self._checked_at = self._monotonic()

    def renew_after_401(self) -> bool:
        """Renew because the server refused the credential; ``False`` when a refusal renewed it just now (this
        refusal is then the server's last word) or renewing failed."""
        with self._lock:
            now = self._monotonic()
            if now - self._forced_at < RENEW_AFTER_401_S:
                return False
            self._forced_at = now
            try:
                self._renew_locked()
            except KubeConfigError:
                return False
            return True

    @property
    def endpoint(self) -> Endpoint:
        c = self.configuration
        return Endpoint(
            host=str(c.host).rstrip("/"),
            ca_file=c.ssl_ca_cert or None,
            cert_file=c.cert_file or None,
            key_file=c.key_file or None,
            verify=bool(c.verify_ssl),
            tls_server_name=getattr(c, "tls_server_name", None) or None,
            proxy=c.proxy or None,
        )

    def authorization(self) -> str | None:
        """The ``Authorization`` header value now (``None``: the client certificate is the credential)."""
        with self._lock:
            if self._token_files and self._monotonic() - self._checked_at >= TOKEN_FILE_CHECK_S:
                self._checked_at = self._monotonic()
                if any(_mtime(path) != seen for path, seen in self._token_files.items()):
                    with contextlib.suppress(KubeConfigError):  # keep the token we have; the server will judge it
                        self._renew_locked()
            header = self.configuration.get_api_key_with_prefix("BearerToken")
        if not header:
            return None
        scheme, _, token = str(header).strip().partition(" ")
        return f"Bearer {token.strip()}" if scheme.lower() == "bearer" else str(header).strip()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


def _new_configuration() -> Any:
    from kubernetes.client import Configuration  # noqa: PLC0415 - a heavy import, done late

    return type.__call__(Configuration)  # a fresh one: never the package's process-wide default


def _load_kubeconfig(files: str, context: str | None) -> tuple[Any, list[Path]]:
    from kubernetes.config.kube_config import _get_kube_config_loader  # noqa: PLC0415

    loader = _get_kube_config_loader(  # type: ignore[no-untyped-call]
        filename=files, active_context=context, persist_config=False)
    configuration = _new_configuration()
    loader.load_and_set(configuration)
    user = getattr(loader, "_user", None)  # the context's user: a tokenFile there is re-read when it changes
    token_file = user.safe_get("tokenFile") if user is not None and hasattr(user, "safe_get") else None
    return configuration, [Path(os.path.expanduser(str(token_file)))] if token_file else []


def _load_explicit(source: KubeSource) -> tuple[Any, list[Path]]:
    from kubernetes.config.kube_config import load_kube_config_from_dict  # noqa: PLC0415

    assert source.api_server is not None
    cluster: dict[str, Any] = {"server": source.api_server}
    if source.ca_file is not None:
        cluster["certificate-authority"] = str(source.ca_file.resolve())
    if source.insecure:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, Any] = {}
    if source.token_file is not None:
        user["tokenFile"] = str(source.token_file.resolve())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flags", "cluster": cluster}],
        "users": [{"name": "flags", "user": user}],
        "contexts": [{"name": "flags", "context": {"cluster": "flags", "user": "flags"}}],
        "current-context": "flags",
    }
    if source.token_file is not None and not source.token_file.is_file():
        raise KubeConfigError(f"cannot read the API token {source.token_file}: no such file")
    configuration = _new_configuration()
    load_kube_config_from_dict(  # type: ignore[no-untyped-call]
        config, client_configuration=configuration, persist_config=False)
    return configuration, [source.token_file] if source.token_file is not None else []


def _load_in_cluster(sa_dir: Path, environ: Mapping[str, str]) -> tuple[Any, list[Path]]:
    from kubernetes.config.incluster_config import InClusterConfigLoader  # noqa: PLC0415

    configuration = _new_configuration()
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(sa_dir / "token"), cert_filename=str(sa_dir / "ca.crt"), try_refresh_token=True,
        environ=environ)
    loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
    return configuration, []


def load_credentials(source: KubeSource, *, environ: Mapping[str, str] | None = None,
                     sa_dir: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    """The credentials of the first source that applies (see the module's docstring), loaded once to fail early."""
    source.check()
    env = os.environ if environ is None else environ
    if source.api_server is not None:
        return Credentials(lambda: _load_explicit(source), f"--api-server {source.api_server}")
    files = str(source.kubeconfig) if source.kubeconfig is not None else env.get("KUBECONFIG", "")
    if not files and source.context is None and env.get("KUBERNETES_SERVICE_HOST"):
        return Credentials(lambda: _load_in_cluster(sa_dir, env), f"the pod's service account ({sa_dir})")
    files = files or str(DEFAULT_KUBECONFIG.expanduser())
    present = [p for p in files.split(os.pathsep) if p and Path(p).expanduser().is_file()]
    if not present:
        where = f"--kubeconfig {source.kubeconfig}" if source.kubeconfig is not None else f"kubeconfig {files}"
        raise KubeConfigError(f"no Kubernetes credentials: not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST "
                              f"is unset) and {where} does not exist; pass --kubeconfig FILE or --api-server URL")
    label = f"kubeconfig {files}" + (f" (context {source.context})" if source.context else "")
    return Credentials(lambda: _load_kubeconfig(files, source.context), label)
