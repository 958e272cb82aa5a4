#!/usr/bin/env bash
# Snakemake runs this once after creating the environment (with the env active, from the working
# directory): install the study library and the davae package from this repository, without touching
# the pinned dependencies.
set -euo pipefail
if [ ! -f pyproject.toml ] || [ ! -d workflow/davae_study ]; then
    echo "post-deploy: run snakemake from the repository root (pyproject.toml not found in $PWD)" >&2
    exit 1
fi
python -m pip install --quiet --no-deps --no-build-isolation -e .
