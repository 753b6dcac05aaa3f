"""Errors raised while reading a workload: they name the object, the field path and what is wrong."""

from __future__ import annotations

from gpuquota.errors import UserError


class WorkloadError(UserError):
    """A manifest the enforcer cannot count: a malformed field, an absurd count, an invalid annotation.

    Deep helpers raise it with only ``path`` and ``problem``; ``extract`` re-raises it with the object's kind and
    name filled in, so every message a user sees reads ``PyTorchJob team-a/llm: spec....replicas: <problem>``.
    """

    def __init__(self, problem: str, *, path: str = "", kind: str = "", name: str = "") -> None:
        self.problem = problem
        self.path = path
        self.kind = kind
        self.name = name
        super().__init__(self._render())

    def _render(self) -> str:
        where = " ".join(p for p in (self.kind, self.name) if p)
        parts = [p for p in (where, self.path) if p]
        return ": ".join([*parts, self.problem])

    def located(self, kind: str, name: str) -> WorkloadError:
        """The same error, naming the object it was found in (keeps the subclass)."""
        return type(self)(self.problem, path=self.path, kind=kind, name=name)


class UnsupportedKind(WorkloadError):  # noqa: N818 (the interface others code against)
    """An object of a kind no adapter reads: reported to the user, never crashed on or counted as zero."""
