"""davae_study.jitcache: numba functions declared inside jit_cache() are cached on disk, and a later
process loads them instead of compiling; outside the block numba's defaults are untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from davae_study.jitcache import jit_cache

# a module of numba functions in every form the libraries use: @njit, @njit(...), njit(func, ...), eager
# signature, explicit cache=False, and code without a source file (exec)
KERNELS = '''
import numba

@numba.njit
def bare(x):
    return x + 1.0

@numba.njit(fastmath=True)
def with_options(x):
    return x * 2.0

def _plain(x):
    return x - 1.0

called = numba.njit(_plain, fastmath=True)

@numba.njit("float64(float64)")
def eager(x):
    return x / 2.0

@numba.njit(cache=False)
def not_cached(x):
    return x * 3.0

@numba.jit(nopython=True)
def jitted(x):
    return x + 4.0

namespace = {"numba": numba}
exec("@numba.njit\\ndef from_exec(x):\\n    return x + 5.0\\n", namespace)
from_exec = namespace["from_exec"]
'''

NAMES = ["bare", "with_options", "called", "eager", "not_cached", "jitted", "from_exec"]

RUN = textwrap.dedent('''
    import importlib, json, sys
    from davae_study.jitcache import jit_cache
    sys.path.insert(0, sys.argv[1])
    with jit_cache():
        kernels = importlib.import_module("kernels")
    out = {{}}
    for name in {names!r}:
        f = getattr(kernels, name)
        value = f(1.0)
        stats = f.stats
        out[name] = {{"value": value, "cached": stats.cache_path is not None, "hits": sum(stats.cache_hits.values())}}
    print(json.dumps(out))
''').format(names=NAMES)


def _run(folder, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", RUN, str(folder)], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_functions_declared_inside_are_cached_and_reused_by_the_next_process(tmp_path):
    (tmp_path / "kernels.py").write_text(KERNELS)
    first = _run(tmp_path, tmp_path / "cache")
    second = _run(tmp_path, tmp_path / "cache")
    values = {"bare": 2.0, "with_options": 2.0, "called": 0.0, "eager": 0.5, "not_cached": 3.0, "jitted": 5.0,
              "from_exec": 6.0}
    for run in (first, second):
        assert {k: v["value"] for k, v in run.items()} == values
    cached = {"bare", "with_options", "called", "eager", "jitted"}
    for name in NAMES:
        # an explicit cache=False is kept; code without a source file cannot be cached and still compiles
        assert first[name]["cached"] is (name in cached), name
        assert second[name]["cached"] is (name in cached), name
        # the second process loads the machine code the first one wrote
        assert first[name]["hits"] == 0, name
        assert (second[name]["hits"] > 0) is (name in cached), name
    assert any((tmp_path / "cache").rglob("*.nbi"))


def test_numba_defaults_restored_after_the_block_and_on_error():
    before = numba.njit, numba.jit
    with pytest.raises(RuntimeError):
        with jit_cache():
            assert numba.njit is not before[0]
            with jit_cache():  # nested: the outer block's setting stays
                inner = numba.njit
            assert numba.njit is inner
            raise RuntimeError("boom")
    assert (numba.njit, numba.jit) == before

    @numba.njit
    def outside(x):
        return x + 1.0

    assert outside(np.float64(1.0)) == 2.0 and outside.stats.cache_path is None
