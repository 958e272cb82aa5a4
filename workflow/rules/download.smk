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
# Applications name their files as `files: {role: <dataset>/<file>}`; `application_data(app)` gives the
# prepare rule its inputs.

import re as _re

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
DATA_SOURCES = _load_sources(DATA["sources"])


def data_path(key):
    """Local path of a data-table file."""
    if key not in DATA_SOURCES:
        raise ValueError(f"data file {key!r} is not in the data table ({DATA['sources']}); add it there")
    return f"{DATA['resources']}/{key}"


def application_data(app):
    """{role: local path} of an application's files (input function for rule prepare)."""
    files = (config.get("applications", {}).get(app) or {}).get("files") or {}
    return {role: data_path(key) for role, key in files.items()}


# Offline runs fail at parse time with one message listing every missing file of the configured applications.
_check_available(
    sorted({k for a in (config.get("applications") or {}).values() for k in ((a or {}).get("files") or {}).values()}),
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
    """Fetch every file of the data table (or of the configured applications with `download_applications`)."""
    input:
        [data_path(k) for k in DATA_SOURCES],


rule download_applications:
    input:
        [p for app in (config.get("applications") or {}) for p in application_data(app).values()],
