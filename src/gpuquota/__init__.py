"""gpuquota: GPU-aware compute-cap enforcement for Kubernetes."""

__version__ = "0.1.0"
