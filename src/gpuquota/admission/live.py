"""The configuration a running webhook decides with — policy profile, tenants, GPU catalog — and its reload.

Everything a decision reads is one immutable ``Snapshot`` swapped in a single assignment, so a request never sees
a new policy with old tenants. Files are polled (a ``stat`` every couple of seconds costs nothing and works for
the symlink swaps Kubernetes does when a mounted ConfigMap or Secret changes). A file that fails to load is
rejected with a log line and a ``reload_failed`` error count; the last good snapshot stays in force.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from gpuquota.catalog import Catalog, load_catalog, load_local_catalog
from gpuquota.errors import UserError
from gpuquota.policy import Policy, load_policy
from gpuquota.tenancy import TenantDirectory, load_tenants

log = logging.getLogger("gpuquota.admission.live")
_T = TypeVar("_T")


def load_policy_file(ref: str) -> Callable[[Path], Policy]:
    """The loader of a watched policy: the reference as given (its path is what is watched)."""
    return lambda _path: load_policy(ref)


@dataclass(frozen=True, slots=True)
class Snapshot:
    policy: Policy
    tenants: TenantDirectory  # empty without a tenants file: namespaces then need labels
    catalog: Catalog
    known_tenants: frozenset[str]


def _known(tenants: TenantDirectory) -> frozenset[str]:
    return frozenset(tenants.known_tenants())


FileStamp = tuple[int, int, int] | None


def file_stamp(path: Path) -> FileStamp:
    """What changes when a file is rewritten or its symlink is swapped: inode, size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatch:
    """Remembers a file's stamp and says when it changed since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stamp = file_stamp(path)

    def changed(self) -> bool:
        stamp = file_stamp(self.path)
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        return True


class LiveConfig:
    """Holds the current snapshot and reloads the policy, tenants and local catalog files when they change.

    ``policy_ref`` is a bundled profile name (never reloaded) or a file path (watched).
    """

    def __init__(
        self,
        policy_ref: str,
        tenants_path: Path | None,
        on_reload_failed: Callable[[str, str], None] | None = None,
        on_policy: Callable[[Policy], None] | None = None,
        on_tenants: Callable[[], None] | None = None,
        *,
        catalog_path: Path | None = None,
    ) -> None:
        self._policy_ref = policy_ref
        self._tenants_path = tenants_path
        self._on_reload_failed = on_reload_failed or (lambda _what, _msg: None)
        self._on_policy = on_policy or (lambda _p: None)
        self._on_tenants = on_tenants or (lambda: None)
        policy_path = Path(policy_ref)
        self._policy_watch = FileWatch(policy_path) if policy_path.is_file() else None
        self._tenants_watch = FileWatch(tenants_path) if tenants_path is not None else None
        tenants = load_tenants(tenants_path) if tenants_path is not None else TenantDirectory()
        policy = load_policy(policy_ref)
        self._catalog_path = catalog_path
        self._catalog_watch = FileWatch(catalog_path) if catalog_path is not None else None
        catalog = load_local_catalog(catalog_path) if catalog_path is not None else load_catalog()
        self.current = Snapshot(policy, tenants, catalog, _known(tenants))
        self._on_policy(policy)

    def check(self) -> list[str]:
        """Reload whatever changed; returns what was reloaded (``policy``, ``tenants``, ``catalog``)."""
        reloaded: list[str] = []
        snap = self.current
        policy = self._changed("policy", self._policy_watch, load_policy_file(self._policy_ref))
        if policy is not None:
            snap = replace(snap, policy=policy)
            reloaded.append("policy")
            log.warning("policy reloaded: %s version %s", policy.name, policy.version)
            self._on_policy(policy)
        tenants = self._changed("tenants", self._tenants_watch, load_tenants)
        if tenants is not None:
            snap = replace(snap, tenants=tenants, known_tenants=_known(tenants))
            reloaded.append("tenants")
            self.current = snap
            self._on_tenants()
            log.warning("tenants reloaded from %s", self._tenants_path)
        catalog = self._changed("catalog", self._catalog_watch, load_local_catalog)
        if catalog is not None:
            snap = replace(snap, catalog=catalog)
            reloaded.append("catalog")
            log.warning("GPU catalog reloaded with %s", self._catalog_path)
        self.current = snap
        return reloaded

    def _changed(self, what: str, watch: FileWatch | None, load: Callable[[Path], _T]) -> _T | None:
        """A watched file's new contents when it changed and loads; ``None`` otherwise (a failure is rejected,
        the last good contents stay in force)."""
        if watch is None or not watch.changed():
            return None
        try:
            return load(watch.path)
        except (UserError, OSError) as exc:
            self._reject(what, str(exc))
            return None

    def _reject(self, what: str, message: str) -> None:
        log.error("rejected the new %s file, keeping the last good one: %s", what, message)
        self._on_reload_failed(what, message)
