"""A Prometheus registry whose every sample also carries fixed labels: the ``cluster`` label of each process that
speaks for one cluster of a fleet (webhook, reconciler, node agent), so one Prometheus, Thanos or Grafana over many
clusters tells their series apart without relabelling rules of its own (docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric


def cluster_registry(cluster: str | None, *, auto_describe: bool = False) -> CollectorRegistry:
    """A plain registry for a process given no ``--cluster-name`` (a single cluster's series stay as they were),
    else one labelling every sample ``cluster=<name>``."""
    if cluster is None:
        return CollectorRegistry(auto_describe=auto_describe)
    return LabelledRegistry({"cluster": cluster}, auto_describe=auto_describe)


class LabelledRegistry(CollectorRegistry):
    """``CollectorRegistry`` adding ``labels`` to each sample it yields (a sample's own label of that name wins)."""

    def __init__(self, labels: Mapping[str, str], *, auto_describe: bool = False) -> None:
        super().__init__(auto_describe=auto_describe)
        self.labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        extra = self.labels
        for family in super().collect():  # every collect builds its families afresh: changing them is safe
            family.samples = [s._replace(labels={**s.labels, **{k: v for k, v in extra.items() if k not in s.labels}})
                              for s in family.samples]
            yield family


__all__ = ["LabelledRegistry", "cluster_registry"]
