"""rule transfer → davae_study.groundtruth.transfer_step"""
from davae_study.groundtruth import transfer_step
from davae_study.pipeline import logged

with logged(snakemake.log[0]):
    transfer_step(
        snakemake.input.prepared,
        snakemake.input.integrated,
        snakemake.output.table,
        snakemake.output.metrics,
        application=snakemake.wildcards.app,
        method=snakemake.wildcards.method,
        truth_path=snakemake.input.truth[0] if snakemake.input.truth else None,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        **snakemake.params.transfer,
    )
