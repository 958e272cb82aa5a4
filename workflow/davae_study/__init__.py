"""The study's library: data preparation, method wrappers, metrics, transfer and figures.

Snakemake scripts in ``workflow/scripts`` are thin: each reads ``snakemake.input``/``params`` and calls one
function of this package. The DAVAE model itself lives in the separate ``davae`` package.
"""

__version__ = "0.1.0"
