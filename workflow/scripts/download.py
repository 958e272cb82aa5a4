"""Snakemake script of the download rules: fetch one data-table file, verified and atomically."""

from davae_study.data.download import fetch

sm = snakemake  # noqa: F821 - injected by Snakemake
cfg, entry = sm.params.data, sm.params.entry
with open(sm.log[0], "w") as log:
    fetch(
        sm.params.key,
        entry["url"],
        sm.output[0],
        sha256=entry.get("sha256"),
        extract=entry.get("extract"),
        mirror=cfg.get("mirror"),
        lock_path=cfg.get("lock"),
        offline=bool(cfg.get("offline", False)),
        retries=int(cfg.get("retries", 3)),
        timeout=float(cfg.get("timeout_s", 120)),
        backoff=float(cfg.get("backoff_s", 2.0)),
        log=lambda msg: print(msg, file=log, flush=True),
    )
