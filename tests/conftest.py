"""Shared fixtures: small real data sets (embedded demo data; ../shared/data when present)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

# Tests are small; keep BLAS/torch from oversubscribing the 2 cores when pytest-xdist runs 2 workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# tests that run on 2 threads: OpenMP threads that sleep while they wait, not spin (docs/davae.md, "Threads");
# set here because test modules load torch before davae could set it
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
SHARED = REPO.parent / "shared" / "data"

IFNB = DEMO / "seuratTools_ifnb1k.h5ad"
CELLBENCH = DEMO / "cellbench_3cl_10x_celseq2_dropseq_symbols.h5ad"


def shared_file(name: str) -> Path:
    """A file of ../shared/data, or skip the test when the folder is not beside the checkout.

    Only for the files that are not committed: ifnb1k and the CellBench symbols file are in data/demo (IFNB,
    CELLBENCH above) and are read from there, never skipped. CI has ../shared/data, so there (environment
    variable CI set, as CI services set it) a missing file fails the test instead of skipping it unnoticed.
    """
    path = SHARED / name
    if not path.exists():
        reason = f"{path} not present (GPL data, read from ../shared/data only)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}; CI must provide ../shared/data", pytrace=False)
        pytest.skip(reason)
    return path


def benchmark_module(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` imported as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ifnb_raw():
    """ifnb1k raw counts with obs batch / cell_type (832 cells, 2 batches)."""
    from davae_study.data import read_application

    return read_application({"reader": "h5ad"}, {"counts": str(IFNB)})


@pytest.fixture(scope="session")
def cellbench_raw():
    """CellBench 3 lines x 3 technologies, raw counts (1394 cells)."""
    from davae_study.data import read_application

    return read_application({"reader": "h5ad"}, {"counts": str(CELLBENCH)})


@pytest.fixture(scope="session")
def ifnb_prepared(ifnb_raw):
    from davae_study.prepare import prepare

    return prepare(ifnb_raw, n_top_genes=1000)


@pytest.fixture(scope="session")
def cellbench_prepared(cellbench_raw):
    from davae_study.prepare import prepare

    return prepare(cellbench_raw, n_top_genes=500)
