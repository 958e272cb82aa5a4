"""The SLURM and local profiles, without a cluster: fake ``sbatch``/``srun``/``sacct``/``squeue``/``scontrol``
on PATH run each submitted job on this machine (through the executor plugin's real submission path: the
``sbatch`` call it builds, the ``slurm-jobstep`` executor inside the job, status polling with ``sacct``) and
record what was asked for. The tests then assert the resources each rule requested.

Not covered here (needs a real cluster): SLURM's own parsing and enforcement of the flags (memory and time
limits actually killing a job, GPU binding through ``--gpus``), account/partition validation against
``sacctmgr``/``sinfo``, array jobs and the ``squeue`` status path.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IFNB = REPO / "data" / "demo" / "seuratTools_ifnb1k.h5ad"  # committed (data/demo): never skipped
PY = sys.executable

FAKE_SBATCH = r'''#!{py}
"""Fake sbatch: record the call, run the job here (synchronously), remember its state for sacct."""
import fcntl, json, os, re, shlex, subprocess, sys
state = os.environ["FAKE_SLURM_DIR"]
argv = sys.argv[1:]
script = None if any(a.startswith("--wrap") for a in argv) else sys.stdin.read()
with open(os.path.join(state, "counter"), "a+") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    jobid = str(int(fh.read() or 1000) + 1)
    fh.seek(0); fh.truncate(); fh.write(jobid)
opts, wrap = {{}}, None
i = 0
while i < len(argv):
    a = argv[i]
    if a.startswith("--wrap="):
        wrap = a[len("--wrap="):]
    elif a.startswith("-") and "=" in a:
        k, v = a.split("=", 1); opts[k] = v
    elif a.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
        opts[a] = argv[i + 1]; i += 1
    else:
        opts[a] = True
    i += 1
comment = opts.get("--comment", "")
record = {{"jobid": jobid, "argv": argv, "opts": opts, "comment": comment}}
with open(os.path.join(state, "submissions.jsonl"), "a") as fh:
    fcntl.flock(fh, fcntl.LOCK_EX)
    fh.write(json.dumps(record) + "\n")
fail = os.environ.get("FAKE_SLURM_FAIL_FIRST")
marker = os.path.join(state, "failed_once")
if fail and re.search(fail, comment) and not os.path.exists(marker):
    open(marker, "w").close()
    status = "OUT_OF_MEMORY"
else:
    log = opts.get("--output", os.path.join(state, "%j.log")).replace("%j", jobid)
    env = dict(os.environ, SLURM_JOB_ID=jobid, SLURM_JOBID=jobid, SLURM_CPUS_PER_TASK=opts.get("--cpus-per-task", "1"))
    with open(log, "w") as out:
        rc = subprocess.run(wrap if wrap is not None else script, shell=True, cwd=opts.get("-D"), env=env,
                            stdout=out, stderr=subprocess.STDOUT).returncode
    status = "COMPLETED" if rc == 0 else "FAILED"
with open(os.path.join(state, jobid + ".state"), "w") as fh:
    fh.write(status)
print(jobid)
'''

FAKE_SACCT = r'''#!{py}
"""Fake sacct/squeue: 'jobid|STATE' for every job the fake sbatch ran; 'none' for the account query."""
import glob, os, sys
if any("Account" in a for a in sys.argv):
    print("none"); sys.exit(0)
for path in sorted(glob.glob(os.path.join(os.environ["FAKE_SLURM_DIR"], "*.state"))):
    print(os.path.basename(path)[:-6] + "|" + open(path).read().strip())
'''

FAKE_SRUN = r'''#!{py}
"""Fake srun: drop srun's own options, record them, run the command."""
import json, os, subprocess, sys
argv = sys.argv[1:]
k = 0
while k < len(argv) and argv[k].startswith("-"):
    k += 1
with open(os.path.join(os.environ["FAKE_SLURM_DIR"], "srun.jsonl"), "a") as fh:
    fh.write(json.dumps({{"jobid": os.environ.get("SLURM_JOB_ID"), "options": argv[:k]}}) + "\n")
if argv[k:] == ["sh", "-s"]:
    sys.exit(subprocess.run(["sh", "-s"], stdin=sys.stdin).returncode)
os.execvp(argv[k], argv[k:])
'''

FAKE_SINFO = r'''#!{py}
print("PARTITION")
for name in {partitions!r}:
    print(name)
'''

FAKE_SCONTROL = r'''#!{py}
print("MaxArraySize            = 1001")
print("MinJobAge               = 300 sec")
'''

CONFIG = """
seed: 0
device: auto
applications:
  ifnb:
    input: {reader: h5ad, files: {counts: data/ifnb1k.h5ad}}
    prepare: {n_top_genes: 300}
    methods: [pca, davae, desc, scvi]
methods:
  pca:
    module: davae_study.methods.pca
    params: {n_comps: 10}
    threads: 1
    resources: {mem_mb: 1500, runtime: 7}
  davae:
    module: davae_study.methods.davae
    params: {epochs: 1, min_steps: 0}
    threads: 2
    resources: {mem_mb: 3000, runtime: 30, gpu: 1, slurm_partition: gpu}
  desc:
    module: davae_study.methods.desc
    params: {pretrain_epochs: 2, max_rounds: 2, progress: false}
    threads: 2
    resources: {mem_mb: 2500, runtime: 20, gpu: 1}
  scvi:
    module: davae_study.methods.scvi
    params: {max_epochs: 1, corrected: false}
    threads: 2
    resources: {mem_mb: 3500, runtime: 25, gpu: 1, slurm_partition: gpu}
metrics: {enabled: [asw_batch]}
"""


def fake_slurm(tmp_path: Path, partitions=("cpu*", "gpu")) -> tuple[Path, Path]:
    """Fake SLURM commands in ``tmp_path/fakebin``; ``sinfo`` lists ``partitions`` (``*``: the default)."""
    bin_dir, state = tmp_path / "fakebin", tmp_path / "slurm_state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in [("sbatch", FAKE_SBATCH), ("sacct", FAKE_SACCT), ("squeue", FAKE_SACCT),
                       ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL),
                       ("sinfo", FAKE_SINFO)]:
        path = bin_dir / name
        path.write_text(body.format(py=PY, partitions=list(partitions)))
        path.chmod(0o755)
    return bin_dir, state


def workdir(tmp_path: Path) -> Path:
    work = tmp_path / "wf"
    work.mkdir()
    for name in ("Snakefile", "workflow", "envs", "config", "profiles"):
        (work / name).symlink_to(REPO / name)
    (work / "data").mkdir()
    (work / "data" / "ifnb1k.h5ad").symlink_to(IFNB)
    (work / "tiny.yaml").write_text(CONFIG)
    return work


def test_profiles_are_valid_yaml_with_the_documented_keys():
    slurm = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["retries"] >= 1
    assert {"mem_mb", "runtime"} <= set(slurm["default-resources"])
    local = yaml.safe_load((REPO / "profiles/local/profile.yaml").read_text())
    assert "executor" not in local and local["cores"] == "all" and local["resources"]["gpu"] >= 1


def run_with_fake_slurm(tmp_path: Path, targets, *, profile=None, partitions=("cpu*", "gpu"), config_extra="",
                        env_extra=None):
    """Run ``targets`` against the fake SLURM with profiles/slurm, or with ``profile`` (the contents of a
    profile.yaml, written to the work directory), and ``config_extra`` appended to the config; returns
    (process, work directory, sbatch calls, srun calls)."""
    bin_dir, state = fake_slurm(tmp_path, partitions)
    work = workdir(tmp_path)
    (work / "tiny.yaml").write_text(CONFIG + config_extra)
    profile_dir = "profiles/slurm"
    if profile is not None:
        profile_dir = "test_profile"
        (work / profile_dir).mkdir()
        (work / profile_dir / "profile.yaml").write_text(yaml.safe_dump(profile))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state),
           "OMP_NUM_THREADS": "1", **(env_extra or {})}
    for var in [v for v in env if v.startswith("SLURM_")]:
        env.pop(var)
    cmd = [PY, "-m", "snakemake", *targets, "--profile", profile_dir,
           "--configfile", "tiny.yaml", "--slurm-init-seconds-before-status-checks", "1",
           "--seconds-between-status-checks", "1", "--latency-wait", "5"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    subs = [json.loads(line) for line in (state / "submissions.jsonl").read_text().splitlines()] \
        if (state / "submissions.jsonl").exists() else []
    sruns = [json.loads(line) for line in (state / "srun.jsonl").read_text().splitlines()] \
        if (state / "srun.jsonl").exists() else []
    return proc, work, subs, sruns


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """The shipped profile as it is (no default partition); the fake cluster's default partition is cpu."""
    return run_with_fake_slurm(tmp_path_factory.mktemp("slurm"), ["results/ifnb/metrics.tsv", "results/ifnb/markers.h5ad"],
                               env_extra={"FAKE_SLURM_FAIL_FIRST": r"rule_integrate_wildcards_.*pca"})


SCALING_500 = "scaling: {source: ifnb, mode: resample, sizes: [500], methods: [davae, pca]}\n"


@pytest.fixture(scope="module")
def slurm_partition_run(tmp_path_factory):
    """The shipped profile plus `default-resources: slurm_partition: cpu` and `set-resources:
    scaling_integrate: slurm_partition: big`, on a fake cluster whose default partition (sinfo's `*`) is
    debug: a job that fell back to the cluster's default would show `-p debug`."""
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "cpu"
    profile["set-resources"]["scaling_integrate"] = {"slurm_partition": "big"}
    targets = [f"results/{d}/integrated/{m}.h5ad" for d in ("ifnb", "scaling/500") for m in ("davae", "pca")]
    return run_with_fake_slurm(tmp_path_factory.mktemp("slurm_partition"), targets, profile=profile,
                               partitions=("debug*", "cpu", "gpu", "big"), config_extra=SCALING_500)


def _by_rule(subs, rule, *values):
    """Submissions of ``rule`` (with these wildcard values, in order); the plugin's ``--comment`` is
    ``rule_<name>[_wildcards_<value>_<value>...]``."""
    want = f"rule_{rule}" + (f"_wildcards_{'_'.join(values)}" if values else "")
    return [s for s in subs if s["comment"] == want or (not values and s["comment"].startswith(want + "_wildcards_"))]


@pytest.mark.slow
def test_slurm_profile_runs_the_study_through_sbatch(slurm_run):
    proc, work, subs, _ = slurm_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work / "results/ifnb/metrics.tsv").exists() and (work / "results/ifnb/markers.h5ad").exists()
    for rule in ("prepare", "integrate", "evaluate", "marker_expression"):
        assert _by_rule(subs, rule), f"rule {rule} was not submitted to SLURM"
    # short rules are localrules: never submitted
    assert not _by_rule(subs, "aggregate_metrics")
    assert all(s["opts"].get("-D") == str(work) for s in subs)
    assert all("--wrap" in " ".join(s["argv"]) or "/dev/stdin" in s["argv"] for s in subs)


@pytest.mark.slow
def test_integrate_requests_from_the_method_table(slurm_run):
    _, _, subs, sruns = slurm_run
    for method, mem, runtime, threads in [("davae", 3000, 30, 2), ("desc", 2500, 20, 2), ("scvi", 3500, 25, 2)]:
        (s,) = _by_rule(subs, "integrate", "ifnb", method)
        o = s["opts"]
        assert int(o["--mem"]) == mem and int(o["-t"]) == runtime
        assert o["--gpus"] == "1" and o["--cpus-per-task"] == str(threads)
        assert "--ntasks" not in o  # GPU jobs: no implicit task geometry
        assert any(r["jobid"] == s["jobid"] and any(opt.startswith("--gpus") for opt in r["options"]) for r in sruns)
    # a CPU method asks for no GPU, one task, its own threads
    first, retry = _by_rule(subs, "integrate", "ifnb", "pca")
    for s in (first, retry):
        assert "--gpus" not in s["opts"] and "--gres" not in s["opts"]
        assert s["opts"]["--ntasks"] == "1" and s["opts"]["--cpus-per-task"] == "1"


@pytest.mark.slow
def test_method_partition_reaches_sbatch(slurm_run):
    """methods.davae (and .scvi).resources.slurm_partition: gpu → `-p gpu`. The shipped profile names no default
    partition, so methods without one (DESC, also a GPU method, and PCA) and the other rules have no
    slurm_partition and go to the cluster's default partition, which the plugin reads from `sinfo` (the
    fake marks `cpu*`)."""
    _, _, subs, _ = slurm_run
    for method in ("davae", "scvi"):  # both GPU methods that name the gpu partition
        (job,) = _by_rule(subs, "integrate", "ifnb", method)
        assert job["opts"]["-p"] == "gpu" and "--partition" not in job["opts"]
    others = _by_rule(subs, "integrate", "ifnb", "desc") + _by_rule(subs, "integrate", "ifnb", "pca")
    others += _by_rule(subs, "prepare") + _by_rule(subs, "evaluate")
    assert len(others) >= 5
    for s in others:
        assert s["opts"].get("-p") == "cpu", s["argv"]


@pytest.mark.slow
def test_methods_without_a_partition_get_the_profile_default(slurm_partition_run):
    """Profile `default-resources: slurm_partition: cpu` and methods.davae.resources.slurm_partition: gpu:
    DAVAE's integrate job goes to gpu, PCA's (no partition of its own) to the profile's cpu, not to the
    cluster's default (the fake sinfo marks `debug*`); the other rules to cpu too; and the profile's
    `set-resources: scaling_integrate: slurm_partition: big` wins over both for every method."""
    proc, _, subs, _ = slurm_partition_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    (davae,) = _by_rule(subs, "integrate", "ifnb", "davae")
    assert davae["opts"]["-p"] == "gpu" and "--partition" not in davae["opts"]
    (pca,) = _by_rule(subs, "integrate", "ifnb", "pca")
    assert pca["opts"]["-p"] == "cpu", pca["argv"]
    others = _by_rule(subs, "prepare") + _by_rule(subs, "scaling_subsample")
    assert len(others) == 2
    for s in others:
        assert s["opts"]["-p"] == "cpu", s["argv"]
    scaled = {s["comment"]: s for s in _by_rule(subs, "scaling_integrate")}
    assert sorted(scaled) == ["rule_scaling_integrate_wildcards_500_davae", "rule_scaling_integrate_wildcards_500_pca"]
    for s in scaled.values():
        assert s["opts"]["-p"] == "big", s["argv"]
    assert len(subs) == 6 and not [s for s in subs if s["opts"].get("-p") == "debug"]


@pytest.mark.slow
def test_retry_scales_memory_and_time_with_the_attempt(slurm_run):
    _, _, subs, _ = slurm_run
    first, retry = _by_rule(subs, "integrate", "ifnb", "pca")  # the fake failed the first with OUT_OF_MEMORY
    assert int(first["opts"]["--mem"]) == 1500 and int(first["opts"]["-t"]) == 7
    assert int(retry["opts"]["--mem"]) == 3000 and int(retry["opts"]["-t"]) == 14


@pytest.mark.slow
def test_profile_set_resources_reach_sbatch(slurm_run):
    _, work, subs, _ = slurm_run
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    (prep,) = _by_rule(subs, "prepare")
    size_mb = (work / "data/ifnb1k.h5ad").stat().st_size / 2**20
    assert int(prep["opts"]["--mem"]) == int(max(8000, 12 * size_mb))  # profile: max(8000, 12 * input.size_mb)
    assert int(prep["opts"]["-t"]) == 120
    assert prep["opts"]["--cpus-per-task"] == str(profile["set-threads"]["prepare"])
    for s in _by_rule(subs, "evaluate"):
        assert int(s["opts"]["--mem"]) == 16000 and s["opts"]["--job-name"].startswith(profile["slurm-jobname-prefix"] + "_")
    # marker_expression reads the input again (plus obs.tsv): sized as prepare, from its inputs' size
    (mx,) = _by_rule(subs, "marker_expression", "ifnb")
    size_mb = sum((work / f).stat().st_size for f in ("data/ifnb1k.h5ad", "results/ifnb/obs.tsv")) / 2**20
    assert int(mx["opts"]["--mem"]) == int(max(8000, 12 * size_mb)) and int(mx["opts"]["-t"]) == 120


def test_profile_entries_name_rules_of_the_workflow():
    """A set-resources / set-threads entry for a rule that does not exist (a typo, a renamed rule) is
    silently ignored by Snakemake: every entry must name a rule of workflow/rules/*.smk, and every rule
    that reads an application's whole input (prepare, marker_expression) has a memory entry scaled by it."""
    profile = yaml.safe_load((REPO / "profiles/slurm/profile.yaml").read_text())
    rules = {m for f in (REPO / "workflow/rules").glob("*.smk")
             for m in re.findall(r"^rule (\w+):", f.read_text(), re.M)}
    assert {"prepare", "marker_expression", "integrate"} <= rules
    for section in ("set-resources", "set-threads"):
        unknown = set(profile[section]) - rules
        assert not unknown, f"profiles/slurm/profile.yaml {section} names no rule of the workflow: {sorted(unknown)}"
    for rule in ("prepare", "marker_expression"):
        assert "input.size_mb" in profile["set-resources"][rule]["mem_mb"], rule


def test_local_profile_dry_run_schedules_gpu_jobs(tmp_path):
    work = workdir(tmp_path)
    cmd = [PY, "-m", "snakemake", "results/ifnb/metrics.tsv", "--profile", "profiles/local", "--configfile",
           "tiny.yaml", "--dry-run", "--printshellcmds"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    block = re.search(r"rule integrate:.*?wildcards: app=ifnb, method=davae.*?resources: ([^\n]*)", out, re.S)
    assert block, out[-3000:]
    assert "gpu=1" in block.group(1) and "mem_mb=3000" in block.group(1)
    assert "slurm_partition=gpu" in block.group(1)


def _integrate_resources(out: str, method: str) -> str:
    block = re.search(rf"rule integrate:.*?wildcards: app=ifnb, method={method}.*?resources: ([^\n]*)", out, re.S)
    assert block, out[-3000:]
    return block.group(1)


def _partition(resources: str):
    found = re.findall(r"\bslurm_partition=([^,\s]*)", resources)
    assert len(found) <= 1, resources
    return found[0] if found else None


@pytest.mark.parametrize(
    "with_partition, extra, expect",
    [
        # method partition + default: DAVAE gets gpu, PCA (none of its own) the default
        (True, ["--default-resources", "slurm_partition=cpu"], {"davae": "gpu", "pca": "cpu"}),
        # the default may be an expression, evaluated per job as Snakemake would (attempt 1 here)
        (True, ["--default-resources", "slurm_partition='cpu' if attempt == 1 else 'long'"],
         {"davae": "gpu", "pca": "cpu"}),
        # method partition, no default: PCA's jobs carry no slurm_partition (the plugin picks the cluster's)
        (True, [], {"davae": "gpu", "pca": None}),
        # set-resources wins over the method table and the default, per rule
        (True, ["--default-resources", "slurm_partition=cpu", "--set-resources", "integrate:slurm_partition=big"],
         {"davae": "big", "pca": "big", "scaling:davae": "gpu", "scaling:pca": "cpu"}),
        # no method partition: the rules leave slurm_partition to the defaults, as before
        (False, ["--default-resources", "slurm_partition=cpu"], {"davae": "cpu", "pca": "cpu"}),
        (False, [], {"davae": None, "pca": None}),
    ],
)
def test_partition_resource_per_method_falls_back_to_the_default(tmp_path, with_partition, extra, expect):
    """integrate and scaling_integrate carry a method's own slurm_partition; a method without one gets the
    run's default-resources slurm_partition (none when the run sets none); set-resources wins."""
    work = workdir(tmp_path)
    config = CONFIG if with_partition else CONFIG.replace(", slurm_partition: gpu", "")
    (work / "tiny.yaml").write_text(config + SCALING_500)
    cmd = [PY, "-m", "snakemake", "results/ifnb/metrics.tsv", "results/scaling/500/integrated/davae.h5ad",
           "results/scaling/500/integrated/pca.h5ad", "--configfile", "tiny.yaml", "--dry-run", "--cores", "2",
           *extra]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    scaled = re.findall(r"rule scaling_integrate:.*?wildcards: n_cells=500, method=(\w+).*?resources: ([^\n]*)", out, re.S)
    assert sorted(m for m, _ in scaled) == ["davae", "pca"], out[-3000:]
    got = {m: _partition(_integrate_resources(out, m)) for m in ("davae", "pca")}
    got.update({f"scaling:{m}": _partition(res) for m, res in scaled})
    want = {f"scaling:{m}": p for m, p in expect.items() if ":" not in m} | expect  # scaling as integrate unless given
    assert got == want
    # the other rules keep the default as it is
    prepare = re.search(r"rule prepare:.*?resources: ([^\n]*)", out, re.S).group(1)
    assert _partition(prepare) == ("cpu" if "--default-resources" in extra else None)


# conda name → pip name where they differ
_CONDA_TO_PIP = {"pytorch": "torch", "python-igraph": "igraph", "matplotlib-base": "matplotlib", "pyyaml": "PyYAML"}
_NOT_IN_LOCK = {"python", "pip", "cuda-version"}


def _canon(name: str) -> str:
    """Package names compared as pip does (PEP 503): case, '-', '_' and '.' do not matter
    (the lock has pip freeze's ml_collections, conda-forge calls it ml-collections)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", ["prepare", "methods", "methods-cuda", "evaluate", "figures"])
def test_conda_envs_pin_the_locked_versions(name):
    lock = dict(line.split("==", 1) for line in (REPO / "envs/requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    lock = {_canon(k): v for k, v in lock.items()}
    env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    assert env["channels"][0] == "conda-forge"
    pinned = 0
    for dep in env["dependencies"]:
        specs = dep["pip"] if isinstance(dep, dict) else [dep]
        for spec in specs:
            if isinstance(dep, dict):
                assert not spec.startswith("-e"), "Snakemake copies env files: install the repo in post-deploy"
                pkg, version = spec.split("==")
            else:
                pkg, version = (spec.split("=") + [""])[:2]
            if pkg in _NOT_IN_LOCK:
                continue
            pip_name = _canon(_CONDA_TO_PIP.get(pkg, pkg))
            assert pip_name in lock, f"{name}.yaml: {pkg} is not in envs/requirements.lock"
            assert version == lock[pip_name], f"{name}.yaml: {pkg}={version}, lock has {lock[pip_name]}"
            pinned += 1
    assert pinned >= 5
    post = REPO / "envs" / f"{name}.post-deploy.sh"
    assert post.exists() and os.access(post, os.X_OK) and "pip install" in post.read_text()
    torch = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("pytorch=")]
    if torch:
        assert torch[0].endswith("=cuda*") == (name == "methods-cuda")
