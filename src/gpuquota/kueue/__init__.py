"""gpuquota as a Kueue AdmissionCheck (``controllerName: gpuquota.io/compute-cap``): Kueue queues and reserves its
own quota, gpuquota says when the compute caps allow a Workload to start (docs/kueue.md).

``workload`` reads Kueue's objects, ``verdict`` decides (pure), ``controller`` does the I/O and ``metrics`` counts.
"""

from gpuquota.kueue.verdict import CONTROLLER_NAME, CheckState, Verdict

__all__ = ["CONTROLLER_NAME", "CheckState", "Verdict"]
