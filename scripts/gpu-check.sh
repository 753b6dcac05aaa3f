#!/usr/bin/env bash
# Check gpuquota's NVML discovery on a machine with a real NVIDIA GPU (see docs/hardware/README.md).
#
#   scripts/gpu-check.sh --prepare [WHEEL_DIR]   on a machine with PyPI access: build gpuquota's wheel and download
#                                                every dependency as CPython 3.12 manylinux x86_64 wheels (default .whl)
#   scripts/gpu-check.sh [--out DIR] [WHEEL_DIR] on the GPU machine (no network needed): install gpuquota from those
#                                                wheels into a temporary venv, print `gpuquota inventory --output json`,
#                                                the raw NVML readings, and TPP compared with the catalog
#
# Exit status: 0 when discovery ran and every identified GPU's TPP matches its catalog entry; 1 when a figure
# differs or a device reported an error; 3 when NVML is unavailable (as `gpuquota inventory`); 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION=${GPU_CHECK_PYTHON_VERSION:-3.12}  # the GPU machine's python3; override to rehearse elsewhere
PLATFORMS=(manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64
  manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
  manylinux1_x86_64)

prepare() {
  local wheels=${1:-.whl} python=${PYTHON:-python3}
  [ -x .venv/bin/python ] && python=.venv/bin/python
  mkdir -p "$wheels"
  rm -f "$wheels"/gpuquota-*.whl
  "$python" -m pip wheel -q --no-deps -w "$wheels" .
  local platform_args=()
  for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
  "$python" -m pip download -q --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platform_args[@]}" -d "$wheels" "$(ls "$wheels"/gpuquota-*.whl)"
  echo "wheels for CPython $PY_VERSION in $wheels: $(ls "$wheels" | wc -l) files, $(du -sh "$wheels" | cut -f1)"
}

OUT_DIR=""
if [ "${1:-}" = "--prepare" ]; then
  shift
  prepare "$@"
  exit 0
fi
if [ "${1:-}" = "--out" ]; then
  [ $# -ge 2 ] || { echo "usage: $0 [--out DIR] [WHEEL_DIR] | --prepare [WHEEL_DIR]" >&2; exit 2; }
  OUT_DIR=$2
  shift 2
  mkdir -p "$OUT_DIR"
fi
WHEELS=${1:-.whl}
if ! ls "$WHEELS"/gpuquota-*.whl >/dev/null 2>&1; then
  echo "gpu-check: no gpuquota wheel in $WHEELS; run '$0 --prepare $WHEELS' where PyPI is reachable" >&2
  exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
VPY="$tmp/venv/bin/python"
PIP_ARGS=(install -q --no-index --no-compile --disable-pip-version-check --find-links "$WHEELS" gpuquota)
# Offline: only the wheels carried along are used. A python3 without ensurepip gets a pip-less venv that the
# outer pip installs into.
if python3 -m venv "$tmp/venv" 2>/dev/null; then
  "$VPY" -m pip "${PIP_ARGS[@]}"
else
  rm -rf "$tmp/venv"
  python3 -m venv --without-pip "$tmp/venv"
  python3 -m pip --python "$VPY" "${PIP_ARGS[@]}"
fi

echo "== machine"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "python: $("$VPY" -c 'import sys; print(sys.version.split()[0])'), gpuquota $("$tmp/venv/bin/gpuquota" version)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,pci.device_id,driver_version,memory.total,clocks.max.sm,power.limit,mig.mode.current --format=csv || true

echo "== gpuquota inventory --output json"
set +e
"$tmp/venv/bin/gpuquota" inventory --output json >"$tmp/inventory.json"
status=$?
set -e
cat "$tmp/inventory.json"
[ -n "$OUT_DIR" ] && cp "$tmp/inventory.json" "$OUT_DIR/inventory.json"

echo "== raw NVML readings"
"$VPY" - "$tmp/raw.json" <<'PY'
"""Every NVML reading discovery uses, and a few it does not (datasheet-relevant clocks and limits), each guarded."""
import json
import sys

import pynvml as n


def read(fn, *args):
    try:
        value = fn(*args)
    except n.NVMLError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a missing symbol in an older driver shows up here too
        return {"error": f"{type(exc).__name__}: {exc}"}
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if hasattr(value, "_fields_"):
        return {name: read_field(getattr(value, name)) for name, _ in value._fields_}
    return value


def read_field(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def device(handle):
    return {
        "name": read(n.nvmlDeviceGetName, handle),
        "uuid": read(n.nvmlDeviceGetUUID, handle),
        "pci": read(n.nvmlDeviceGetPciInfo, handle),
        "brand": read(n.nvmlDeviceGetBrand, handle),
        "architecture": read(n.nvmlDeviceGetArchitecture, handle),
        "memory": read(n.nvmlDeviceGetMemoryInfo, handle),
        "cuda_compute_capability": read(n.nvmlDeviceGetCudaComputeCapability, handle),
        "num_gpu_cores": read(n.nvmlDeviceGetNumGpuCores, handle),
        "max_clock_sm_mhz": read(n.nvmlDeviceGetMaxClockInfo, handle, n.NVML_CLOCK_SM),
        "max_clock_graphics_mhz": read(n.nvmlDeviceGetMaxClockInfo, handle, n.NVML_CLOCK_GRAPHICS),
        "max_clock_mem_mhz": read(n.nvmlDeviceGetMaxClockInfo, handle, n.NVML_CLOCK_MEM),
        "default_app_clock_sm_mhz": read(n.nvmlDeviceGetDefaultApplicationsClock, handle, n.NVML_CLOCK_SM),
        "power_management_limit_mw": read(n.nvmlDeviceGetPowerManagementLimit, handle),
        "power_default_limit_mw": read(n.nvmlDeviceGetPowerManagementDefaultLimit, handle),
        "enforced_power_limit_mw": read(n.nvmlDeviceGetEnforcedPowerLimit, handle),
        "mig_mode": read(n.nvmlDeviceGetMigMode, handle),
        "max_mig_device_count": read(n.nvmlDeviceGetMaxMigDeviceCount, handle),
        # Documented to answer on MIG device handles only: recorded to confirm it on this driver.
        "attributes_on_full_gpu": read(n.nvmlDeviceGetAttributes, handle),
    }


def migs(handle):
    out = []
    count = read(n.nvmlDeviceGetMaxMigDeviceCount, handle)
    for slot in range(count if isinstance(count, int) else 0):
        try:
            mig = n.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except n.NVMLError:
            continue
        out.append({"slot": slot, "name": read(n.nvmlDeviceGetName, mig), "uuid": read(n.nvmlDeviceGetUUID, mig),
                    "attributes": read(n.nvmlDeviceGetAttributes, mig), "memory": read(n.nvmlDeviceGetMemoryInfo, mig)})
    return out


try:
    n.nvmlInit()
except n.NVMLError as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
try:
    raw = {
        "driver_version": read(n.nvmlSystemGetDriverVersion),
        "nvml_version": read(n.nvmlSystemGetNVMLVersion),
        "cuda_driver_version": read(n.nvmlSystemGetCudaDriverVersion),
        "pynvml": getattr(n, "__version__", None),
        "devices": [],
    }
    for index in range(n.nvmlDeviceGetCount()):
        try:
            handle = n.nvmlDeviceGetHandleByIndex(index)
        except n.NVMLError as exc:
            raw["devices"].append({"index": index, "error": f"{type(exc).__name__}: {exc}"})
            continue
        raw["devices"].append({"index": index, **device(handle), "mig_devices": migs(handle)})
finally:
    n.nvmlShutdown()
text = json.dumps(raw, indent=2, default=str)
print(text)
with open(sys.argv[1], "w") as f:
    f.write(text + "\n")
PY
[ -n "$OUT_DIR" ] && [ -f "$tmp/raw.json" ] && cp "$tmp/raw.json" "$OUT_DIR/nvml-raw.json"

if [ "$status" -ne 0 ]; then
  echo "gpu-check: gpuquota inventory exited $status" >&2
  exit "$status"
fi

echo "== TPP against the catalog"
"$VPY" - "$tmp/inventory.json" <<'PY'
import json
import sys

from gpuquota.catalog import load_catalog

catalog = load_catalog()
inventory = json.load(open(sys.argv[1]))
problems = 0
for device in inventory["devices"]:
    where = f"GPU {device['index']} {device['name']!r}"
    if device.get("error"):
        problems += 1
        print(f"ERROR    {where}: {device['error']}")
        continue
    spec = catalog.get(device["catalog_key"]) if device.get("catalog_key") else None
    if spec is None:
        problems += 1
        print(f"UNKNOWN  {where}: not in the catalog; {device['estimate_basis']} -> {device['tpp']:.0f} TPP")
        continue
    same = abs(device["tpp"] - spec.tpp) < 0.5
    problems += 0 if same else 1
    print(f"{'OK' if same else 'DIFFERS':8} {where} -> {spec.key}: {device['tpp']:.0f} TPP (catalog {spec.tpp:.0f}), "
          f"class {device['gpu_class']}, {device['h100e']:.2f} H100e, PCI {device['pci_device_id']}")
    for mig in device.get("mig", []):
        print(f"         MIG {mig['profile']}: {mig['sm_count']} SMs, {mig['tpp']:.1f} TPP")
print(f"total: {inventory['gpu_count']} GPU(s), {inventory['total_tpp']:.0f} TPP")
sys.exit(1 if problems else 0)
PY
