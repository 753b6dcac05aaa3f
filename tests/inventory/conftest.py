"""The fake NVML: ``fakenvml/fake_nvml.c`` compiled once per test session into a temp dir and loaded as
``pynvml.nvmlLib``, so the real ``pynvml`` bindings (argument structs, error classes) run against it."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

from gpuquota.catalog import Catalog, load_catalog
from gpuquota.inventory import NodeInventory, discover

HERE = Path(__file__).parent
SOURCE = HERE / "fakenvml" / "fake_nvml.c"
PROFILES = HERE / "fakenvml" / "profiles"
ALL_PROFILES = sorted(p.stem for p in PROFILES.glob("*.profile"))


@pytest.fixture(scope="session")
def fake_nvml_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("the fake NVML library needs a C compiler (gcc); install it (apt-get install gcc)")
    target = tmp_path_factory.mktemp("fakenvml") / "libnvidia-ml.so.1"
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-o", str(target), str(SOURCE)],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def fake_nvml(fake_nvml_library: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str | Path], None]:
    """Load the fake library into pynvml; call the returned function with a profile name or a file path."""
    monkeypatch.setattr(pynvml, "nvmlLib", ctypes.CDLL(str(fake_nvml_library)))
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})

    def use(profile: str | Path) -> None:
        path = profile if isinstance(profile, Path) else PROFILES / f"{profile}.profile"
        monkeypatch.setenv("FAKE_NVML_PROFILE", str(path))

    return use


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def discover_profile(fake_nvml: Callable[[str | Path], None]) -> Callable[..., NodeInventory]:
    def run(profile: str | Path, node: str = "gpu-node-1") -> NodeInventory:
        fake_nvml(profile)
        return discover(node_name=node)

    return run


def profile_variant(name: str, tmp_path: Path, replace: dict[str, str] | None = None, append: str = "") -> Path:
    """A copy of a bundled profile with some lines changed: the way tests make one-off device states."""
    text = (PROFILES / f"{name}.profile").read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} not in profile {name}"
        text = text.replace(old, new, 1)
    path = tmp_path / f"{name}-variant.profile"
    path.write_text(text + append)
    return path
