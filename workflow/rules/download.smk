# Download rule family: one rule per row of the data table (config/data_sources.yaml), each writing
# resources/<dataset>/<file> atomically after verifying it (see davae_study.data.download.fetch).
#
# config keys (all under `data:`, all optional):
#   sources:    path of the data table, or the table itself        (default config/data_sources.yaml)
#   resources:  folder the files land in                           (default resources)
#   lock:       lock file of first-download checksums              (default config/data.lock.yaml)
#   mirror:     local folder or base URL holding <dataset>/<file>  (default null: original URLs)
#   offline:    true: never transfer; missing files -> one error listing what to fetch and where
#   retries:    transfer attempts after the first, inside one job  (default 3)
#   job_retries: Snakemake `retries:` of each download job          (default 1)
#   timeout_s:  per-request timeout in seconds                     (default 120)
#   backoff_s:  base of the exponential wait between attempts      (default 2)
#
# Applications list their files as `input.files: {role: resources/<dataset>/<file>}`; every such path is the
# output of one download rule, so rule prepare's inputs pull the downloads in.

import re as _re
import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(workflow.current_basedir).parent))  # davae_study, also without an install
from davae_study.data import download as _dl  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402

DATA = _dl.data_settings(config.get("data"), workflow.basedir)
DATA_SOURCES = _dl.load_sources(DATA["sources"])
_APPS = config.get("applications") or {}
_APP_KEYS = sorted({k for spec in _APPS.values() for k in _dl.application_data_keys(DATA, spec)})

# Offline runs fail at parse time with one message listing every missing file of the configured applications.
_dl.check_available(_APP_KEYS, DATA_SOURCES, DATA["resources"], offline=bool(DATA["offline"]), mirror=DATA["mirror"])

_DOWNLOAD_RULES = {"download_" + _re.sub(r"\W", "_", _k): _k for _k in DATA_SOURCES}  # rule name -> data key


# Once per run, before any job, and only when the run downloads something: without network (no host of the
# files reachable) or with files absent from a mirror folder, stop with one message listing every file to
# fetch and where to put it, rather than failing download job after download job. The files are those of the
# download jobs the run will execute (Snakemake's job list, not a public API: else the applications' missing
# files). Snakemake keeps one onstart handler per workflow: add other start-up work here.
onstart:
    try:
        _jobs = workflow.dag.needrun_jobs()
        _needed = sorted({_DOWNLOAD_RULES[j.rule.name] for j in _jobs if j.rule.name in _DOWNLOAD_RULES})
    except (AttributeError, TypeError):
        _needed = [k for k, _, _ in _dl.missing_files(_APP_KEYS, DATA_SOURCES, DATA["resources"])]
    try:
        _dl.check_downloads(_needed, DATA_SOURCES, DATA, log=lambda msg: print(msg, file=_sys.stderr))
    except _dl.DataUnavailableError as _err:
        raise WorkflowError(str(_err)) from None  # Snakemake prints a WorkflowError's message, no traceback


for _key, _entry in DATA_SOURCES.items():
    _out = _dl.data_path(DATA, DATA_SOURCES, _key)
    _sha = _entry.get("sha256") if not _entry.get("extract") else None

    rule:
        name:
            "download_" + _re.sub(r"\W", "_", _key)
        output:
            ensure(_out, sha256=_sha) if _sha else _out,
        log:
            f"logs/download/{_key}.log",
        params:
            key=_key,
            entry=_entry,
            data=DATA,
        retries: int(DATA["job_retries"])
        localrule: True
        conda:
            "../../envs/prepare.yaml"
        message:
            f"download {_key}"
        script:
            "../scripts/download.py"


rule download_data:
    """Fetch every file of the data table."""
    input:
        [_dl.data_path(DATA, DATA_SOURCES, k) for k in DATA_SOURCES],


rule download_applications:
    """Fetch the files of the configured applications only."""
    input:
        [_dl.data_path(DATA, DATA_SOURCES, k) for k in _APP_KEYS],
