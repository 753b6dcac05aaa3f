"""One module per family of workload kinds; each exposes ``ADAPTERS``: (apiGroup, kind) → adapter."""
