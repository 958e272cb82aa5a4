"""download_* rules → davae_study.data.download.fetch_entry: one data-table file, verified and atomically."""

import sys

from davae_study.data.download import DataUnavailableError, DownloadError, fetch_entry

sm = snakemake  # noqa: F821 - injected by Snakemake
with open(sm.log[0], "w") as log:
    try:
        fetch_entry(sm.params.key, sm.params.entry, sm.params.data["resources"], data_config=sm.params.data,
                    log=lambda msg: print(msg, file=log, flush=True))
    except (DownloadError, DataUnavailableError) as exc:
        # What went wrong and what to do is the whole message: no traceback, in the log and on the terminal.
        print(exc, file=log, flush=True)
        print(exc, file=sys.stderr, flush=True)
        sys.exit(1)
