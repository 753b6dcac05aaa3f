"""Cost of the inventory on the webhook and on a node.

- ``apply``: one watch event for a node whose GPUs did not change (the common case: kubelet status updates), for
  annotated (agent) and GFD-labelled nodes, in a view of ``--nodes`` nodes;
- ``change``: one event that changes a node's GPUs (recomputes models and capacity over all nodes);
- ``models``: the call the webhook makes per admission;
- ``discover``: one NVML discovery of an 8-GPU node through pynvml against the fake libnvidia-ml (Python-side cost;
  a real driver adds its own).

Usage: .venv/bin/python bench/bench_inventory.py [--nodes 5000] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pynvml

from gpuquota.catalog import load_catalog
from gpuquota.inventory import ClusterInventory, discover, node_patch
from percall import per_call_us

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "tests" / "inventory" / "fakenvml" / "profiles"


def gfd_node(name: str, product: str, count: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(count),
                "kubernetes.io/hostname": name,
            },
            "annotations": {},
        }
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "libnvidia-ml.so.1"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(ROOT / "tests/inventory/fakenvml/fake_nvml.c")],
            check=True,
        )
        pynvml.nvmlLib = ctypes.CDLL(str(library))
        os.environ["FAKE_NVML_PROFILE"] = str(PROFILES / "h100-sxm-8x.profile")
        h100 = discover(node_name="template")
        disc = per_call_us(lambda: discover(node_name="n"), max(1, args.repeat // 20), rounds=5)

    catalog = load_catalog()
    view = ClusterInventory(catalog)
    nodes = []
    for i in range(args.nodes):
        if i % 2:
            nodes.append(gfd_node(f"gfd-{i}", "NVIDIA-L4", 4))
        else:
            inventory = h100.__class__(
                f"agent-{i}", h100.driver_version, h100.nvml_version, h100.cuda_driver_version, h100.devices
            )
            nodes.append({"metadata": {"name": f"agent-{i}", "labels": {}, "annotations": {}}})
            patch = node_patch(inventory)["metadata"]
            nodes[-1]["metadata"]["labels"].update(patch["labels"])
            nodes[-1]["metadata"]["annotations"].update(patch["annotations"])
    view.replace_all(nodes)

    annotated, labelled = nodes[0], nodes[1]
    apply_agent = per_call_us(lambda: view.apply_node(annotated), args.repeat, rounds=5)
    apply_gfd = per_call_us(lambda: view.apply_node(labelled), args.repeat, rounds=5)
    changed = [copy.deepcopy(labelled), copy.deepcopy(labelled)]
    changed[1]["metadata"]["labels"]["nvidia.com/gpu.count"] = "2"
    flip = iter(range(10**9))
    change = per_call_us(lambda: view.apply_node(changed[next(flip) % 2]), max(1, args.repeat // 20), rounds=5)
    models = per_call_us(view.models, args.repeat * 10, rounds=5)

    print(f"nodes in view: {args.nodes} (half agent-annotated 8x H100, half GFD-labelled 4x L4)")
    for label, (median, best) in (
        ("apply, unchanged agent node", apply_agent),
        ("apply, unchanged GFD node", apply_gfd),
        ("apply, GPUs changed (recompute)", change),
        ("models()", models),
        ("discover(), 8x H100 fake NVML", disc),
    ):
        print(f"{label:34} {median:10.2f} µs  (best {best:.2f})")


if __name__ == "__main__":
    main()
