"""One module per workload kind (a family module where kinds share one shape: the training operator's v1 jobs);
each defines its ``KIND`` (or ``KINDS``), a ``gpuquota.workloads.kind.WorkloadKind``."""
