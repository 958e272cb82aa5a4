"""download_* rules → davae_study.data.download.fetch_entry: one data-table file, verified and atomically."""

from davae_study.data.download import fetch_entry

sm = snakemake  # noqa: F821 - injected by Snakemake
with open(sm.log[0], "w") as log:
    fetch_entry(sm.params.key, sm.params.entry, sm.params.data["resources"], data_config=sm.params.data,
                log=lambda msg: print(msg, file=log, flush=True))
