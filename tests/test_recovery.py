"""Crash recovery with the README's own commands: a run killed with SIGKILL mid-job is finished by
`make unlock` then `make demo`, and no job that had finished is redone. Also the stale-lock check that
keeps `make unlock` from unlocking while a run (or a job a killed run left behind) is still going."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import IFNB, REPO
from davae_study import runlock

VENV = Path(sys.prefix)  # the environment the tests run in (.venv under `make test`)

# One application, one method: 11 jobs. The job killed is the UMAP (its log opens before scanpy and umap-learn
# load, seconds before the job ends, so the kill lands mid-job), after prepare and integrate have finished.
CONFIG = {
    "seed": 0,
    "device": "cpu",
    "applications": {
        "ifnb": {"input": {"reader": "h5ad", "files": {"counts": "data/ifnb1k.h5ad"}},
                 "prepare": {"n_top_genes": 300}, "methods": ["pca"]},
    },
    "methods": {"pca": {"module": "davae_study.methods.pca", "params": {"n_comps": 10}}},
    "metrics": {"kbet": {"n_repeat": 10}, "ari": {"n_iter": 3}},
}
KILLED_OUTPUT = "results/ifnb/umap/pca.tsv"
KILLED_LOG = "logs/ifnb/umap/pca.log"


def checkout(tmp_path: Path) -> Path:
    """A copy of the repository's workflow (links) with the tiny config, as a user's checkout."""
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("Makefile", "Snakefile", "workflow", "envs", "config", "profiles", "pyproject.toml"):
        (work / name).symlink_to(REPO / name)
    (work / "data").mkdir()
    (work / "data" / "ifnb1k.h5ad").symlink_to(IFNB)
    (work / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    return work


def make(work: Path, target: str) -> list[str]:
    """The README's command (`make demo`, `make unlock`) on the tiny config, in the tests' environment; the
    install stamp is taken as up to date (-o), so make never installs anything here."""
    return ["make", "-C", str(work), target, f"VENV={VENV}", "CONFIGFILE=tiny.yaml", "CORES=1",
            "-o", f"{VENV}/.installed"]


def mtimes(work: Path) -> dict[str, int]:
    return {p.relative_to(work).as_posix(): p.stat().st_mtime_ns
            for p in (work / "results").rglob("*") if p.is_file()}


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table of a run."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None or not (VENV / "bin" / "snakemake").exists(),
                    reason="needs make and the snakemake of the tests' environment")
def test_kill_mid_job_then_the_readme_commands_finish_without_redoing_jobs(tmp_path):
    work = checkout(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # 1. `make demo`, killed with SIGKILL (make, Snakemake and the running job: its whole process group, as a
    #    crash or the OOM killer would) while the UMAP job runs.
    first = subprocess.Popen(make(work, "demo"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    deadline = time.monotonic() + 600
    while not (work / KILLED_LOG).exists():
        assert first.poll() is None, f"the run ended before the UMAP job:\n{first.stdout.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, "the UMAP job did not start within 10 minutes"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    first.stdout.close()
    for _ in range(100):  # the group is gone once no process of it is left in the directory
        if not runlock.live_runs(work):
            break
        time.sleep(0.1)
    assert not (work / KILLED_OUTPUT).exists()
    assert runlock.lock_files(work), "a SIGKILLed Snakemake leaves its lock"
    done = mtimes(work)
    # finished before the kill (UMAP needs them): must not be redone
    assert {"results/ifnb/prepared.h5ad", "results/ifnb/integrated/pca.h5ad"} <= set(done)

    # 2. The README command again: it stops at once on the stale lock, says what to do, touches nothing.
    again = subprocess.run(make(work, "demo"), capture_output=True, text=True, env=env)
    assert again.returncode != 0
    assert "make unlock" in again.stderr and "no Snakemake run is going" in again.stderr, again.stderr
    assert mtimes(work) == done

    # 3. The one documented extra line, then the README command: the run finishes.
    unlock = subprocess.run(make(work, "unlock"), capture_output=True, text=True, env=env)
    assert unlock.returncode == 0, unlock.stdout[-2000:] + unlock.stderr[-2000:]
    assert not runlock.lock_files(work)
    rerun = subprocess.run(make(work, "demo"), capture_output=True, text=True, env=env)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-5000:]
    assert "IncompleteFilesException" not in out
    assert (work / KILLED_OUTPUT).exists() and (work / "results/summary.tsv").exists()

    # No finished job redone: every result written before the kill is untouched, and the rerun's jobs are
    # the interrupted one and those that had not run yet.
    after = mtimes(work)
    assert {k: after[k] for k in done} == done
    jobs = job_counts(out)
    assert jobs.get("umap") == 1 and not {"prepare", "integrate"} & set(jobs), jobs
    # and the study is complete
    dry = subprocess.run([str(VENV / "bin" / "snakemake"), "-n", "all", "--configfile", "tiny.yaml"], cwd=work,
                         capture_output=True, text=True, env=env)
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]


SLOW_TWO_OUTPUTS = """
rule all:
    input: "out/b.txt"

rule two_outputs:
    output: "out/a.txt", "out/b.txt"
    run:
        import os, time
        open(output[0], "w").write("a")
        if os.path.exists("first_run"):
            time.sleep(120)  # killed here: a.txt exists, b.txt not yet
        open(output[1], "w").write("b")
"""


def test_default_profile_reruns_a_job_killed_after_writing_part_of_its_outputs(tmp_path):
    """What made the killed demo stop with IncompleteFilesException: a job killed after writing one of its
    outputs (e.g. a figure's png before its pdf). Snakemake applies the workflow's profiles/default without
    being asked, and it reruns such a job; without it (`--workflow-profile none`) the rerun stops."""
    (tmp_path / "Snakefile").write_text(SLOW_TWO_OUTPUTS)
    (tmp_path / "first_run").touch()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "default").symlink_to(REPO / "profiles" / "default")
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1"]
    run = subprocess.Popen(snakemake, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "out" / "a.txt").exists():
        assert run.poll() is None and time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    (tmp_path / "first_run").unlink()
    assert subprocess.run([*snakemake, "--unlock"], cwd=tmp_path, capture_output=True).returncode == 0
    bare = subprocess.run([*snakemake, "--workflow-profile", "none"], cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode != 0 and "IncompleteFilesException" in bare.stdout + bare.stderr
    assert not (tmp_path / "out" / "b.txt").exists()
    # the same command with the workflow's default profile (no flag): the killed job runs again and completes
    rerun = subprocess.run(snakemake, cwd=tmp_path, capture_output=True, text=True)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "profiles/default" in out and job_counts(out) == {"two_outputs": 1, "all": 1}, out[-3000:]
    assert (tmp_path / "out" / "b.txt").read_text() == "b"


def test_stale_lock_check_tells_a_live_job_from_a_killed_run(tmp_path):
    """Locked with a job left running (what a `kill -9` of Snakemake alone leaves: its job goes on): a
    run and an unlock are refused, naming the pid; once the job is gone, the unlock may go, a run not."""
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    assert runlock.verdict(tmp_path) == (True, f"{tmp_path}: not locked")
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text(f"{tmp_path}/results/x\n")
    (tmp_path / ".snakemake" / "scripts").mkdir()
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", ".snakemake/scripts/tmpab12.x.py"],
                           cwd=tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", ".snakemake/scripts/y.py"],
                             cwd=tmp_path.parent)  # a job of another directory does not count
    try:
        for unlock in (False, True):
            ok, msg = runlock.verdict(tmp_path, unlock=unlock)
            assert not ok and f"pid {job.pid}" in msg and f"pid {other.pid}" not in msg, msg
        cli = subprocess.run([sys.executable, "-m", "davae_study.runlock", "--dir", str(tmp_path), "--unlock"],
                             capture_output=True, text=True)
        assert cli.returncode == 1 and "still going" in cli.stderr
    finally:
        job.kill()
        other.kill()
        job.wait()
        other.wait()
    ok, msg = runlock.verdict(tmp_path, unlock=True)
    assert ok and "stale lock" in msg
    ok, msg = runlock.verdict(tmp_path)
    assert not ok and "make unlock" in msg


def test_is_snakemake_recognises_runs_and_their_jobs():
    assert runlock.is_snakemake(["/x/.venv/bin/python", "/x/.venv/bin/snakemake", "all", "--cores", "2"])
    assert runlock.is_snakemake(["python3", "-m", "snakemake", "--unlock"])
    assert runlock.is_snakemake(["snakemake", "all"])
    assert runlock.is_snakemake(["/x/.venv/bin/python", "/w/.snakemake/scripts/tmpq1.integrate.py"])
    assert not runlock.is_snakemake(["bash"])
    assert not runlock.is_snakemake(["vim", "Snakefile"])
    assert not runlock.is_snakemake(["python", "-m", "pytest", "tests/test_snakemake_things.py"])


def test_default_profile_is_the_workflow_profile_and_consistent_with_the_others():
    """profiles/default is what Snakemake applies to every run without being named (the README's
    commands); it reruns interrupted jobs, and it sets nothing that belongs to a machine (cores, memory,
    executor), which profiles/local and profiles/slurm set and it would override."""
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert default == {"rerun-incomplete": True}
    for name in ("local", "slurm"):
        other = yaml.safe_load((REPO / f"profiles/{name}/profile.yaml").read_text())
        assert other.get("rerun-incomplete", True) is True, name
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "all", "--configfile", "config/demo.yaml"],
                          cwd=REPO, capture_output=True, text=True)
    assert "workflow specific profile" in proc.stdout + proc.stderr and "profiles/default" in proc.stdout + proc.stderr
