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
# output of one download rule, so rule prepare's inputs pull the downloads in. `application_data_keys(app)`
# gives an application's data-table keys.

import re as _re
import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(workflow.current_basedir).parent))  # davae_study, also without an install
from davae_study.data.download import check_available as _check_available, load_sources as _load_sources

DATA = {
    "sources": "config/data_sources.yaml",
    "resources": "resources",
    "lock": "config/data.lock.yaml",
    "mirror": None,
    "offline": False,
    "retries": 3,
    "job_retries": 1,
    "timeout_s": 120,
    "backoff_s": 2.0,
    **(config.get("data") or {}),
}
# The data table and the lock file belong to the repository: relative paths resolve against it, so the
# workflow can run in another working directory (--directory) and still find them.
for _k in ("sources", "lock"):
    if isinstance(DATA[_k], str) and not _Path(DATA[_k]).is_absolute():
        DATA[_k] = str(_Path(workflow.basedir) / DATA[_k])
DATA_SOURCES = _load_sources(DATA["sources"])


def data_path(key):
    """Local path of a data-table file."""
    if key not in DATA_SOURCES:
        raise ValueError(f"data file {key!r} is not in the data table ({DATA['sources']}); add it there")
    return f"{DATA['resources']}/{key}"


def application_data_keys(app):
    """Data-table keys of an application's files (those of its input.files that live under resources/)."""
    spec = (config.get("applications") or {}).get(app) or {}
    files = (spec.get("input") or {}).get("files") or {}
    root = DATA["resources"].rstrip("/") + "/"
    return [str(p)[len(root):] for p in files.values() if str(p).startswith(root)]


# Offline runs fail at parse time with one message listing every missing file of the configured applications.
_check_available(
    sorted({k for app in (config.get("applications") or {}) for k in application_data_keys(app)}),
    DATA_SOURCES,
    DATA["resources"],
    offline=bool(DATA["offline"]),
    mirror=DATA["mirror"],
)

for _key, _entry in DATA_SOURCES.items():
    _out = data_path(_key)
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
        message:
            f"download {_key}"
        script:
            "../scripts/download.py"


rule download_data:
    """Fetch every file of the data table."""
    input:
        [data_path(k) for k in DATA_SOURCES],


rule download_applications:
    """Fetch the files of the configured applications only."""
    input:
        [data_path(k) for app in (config.get("applications") or {}) for k in application_data_keys(app)],
