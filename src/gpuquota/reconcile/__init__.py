"""The reconciler: settles reservations against what really ran.

``plan`` (pure) turns active reservations and the cluster's objects into transitions; ``Reconciler`` follows the
workload kinds through ``KubeApi`` and applies them to the ledger. See docs/ledger.md, "Reconciler".
"""

from gpuquota.reconcile.metrics import ReconcilerMetrics
from gpuquota.reconcile.plan import DEFAULT_GRACE, ClusterView, Transition, plan, pod_starts
from gpuquota.reconcile.reconciler import PassResult, Reconciler
from gpuquota.reconcile.resources import RESOURCES, Resource

__all__ = [
    "DEFAULT_GRACE",
    "RESOURCES",
    "ClusterView",
    "PassResult",
    "Reconciler",
    "ReconcilerMetrics",
    "Resource",
    "Transition",
    "plan",
    "pod_starts",
]
