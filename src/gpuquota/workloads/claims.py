"""Owner claims: how the objects a workload's controllers make (pods, child Jobs, StatefulSets) name that workload.

Controllers label what they create with the workload's name, and a tenant writes its own pods, so a label is only a
claim. A claim is believed only when it agrees with the object's controller owner reference (``controller: true``),
the one thing a pod template cannot forge: each kind's ``LabelClaim`` says which label names it and which
controllers may carry it (``gpuquota.admission.owners`` explains the threat model and asks the ledger).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """A workload an object claims to belong to, in the object's own namespace. ``uid`` is empty when the claim
    comes from a label (labels carry names, not uids). ``via``: for a LeaderWorkerSet label claim, the StatefulSet
    controller it rests on, whose own owner must still be checked (``admission.lws``); not part of equality."""

    group: str
    kind: str
    name: str
    uid: str = ""
    via: OwnerRef | None = field(default=None, compare=False)


Believe = Callable[[str, OwnerRef, Mapping[str, Any]], str | None]
"""(label value, the object's controller, its labels) → the claimed workload's name, or ``None`` when the controller
is not one the claimed workload's controllers would set."""


@dataclass(frozen=True, slots=True)
class LabelClaim:
    """One label a kind's controllers put on the objects they make, naming the workload.

    ``requires``: a (label, value) that must be present too (Kubeflow operators name the job in one label and
    themselves in another). ``via_controller``: the claim rests on the controller, whose own owner must be checked
    (a LeaderWorkerSet's StatefulSets); the claim then carries it in ``OwnerRef.via``.
    """

    label: str
    believe: Believe
    requires: tuple[str, str] | None = None
    via_controller: bool = False

    def claim(
        self, group: str, kind: str, value: str, labels: Mapping[str, Any], controller: OwnerRef
    ) -> OwnerRef | None:
        """The claim on ``group``/``kind`` that ``value`` (this label's value on the object) makes, if believed."""
        if self.requires is not None and labels.get(self.requires[0]) != self.requires[1]:
            return None
        name = self.believe(value, controller, labels)
        if not name:
            return None
        return OwnerRef(group, kind, name, via=controller if self.via_controller else None)


def controlled_by(group: str, kind: str) -> Believe:
    """The usual case: the labelled object's controller is the named workload itself (or its kind's own child kind,
    named as the workload)."""

    def believe(value: str, controller: OwnerRef, labels: Mapping[str, Any]) -> str | None:
        del labels
        same = controller.group == group and controller.kind == kind and controller.name == value
        return value if same else None

    return believe
