# DAVAE benchmark study: the paper's five applications (config/config.yaml) or the embedded offline demo
# (config/demo.yaml). Rule → script → function: see workflow/davae_study/pipeline.py and docs/CONTRACTS.md.
from snakemake.utils import min_version

min_version("8.0")


# The paper's study by default; a --configfile on the command line (e.g. config/demo.yaml) replaces it
# instead of being merged into it, so the demo never inherits the paper's applications.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/core.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/scaling.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/verdicts.smk"


rule all:
    input:
        all_outputs(),
        transfer_outputs(),
        scaling_outputs(),
        verdict_outputs(),
    default_target: True
