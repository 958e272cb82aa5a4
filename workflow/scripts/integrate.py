"""rule integrate → davae_study.pipeline.integrate"""
from davae_study.pipeline import integrate, logged

with logged(snakemake.log[0]):
    integrate(
        snakemake.input[0],
        snakemake.output[0],
        method=snakemake.wildcards.method,
        module=snakemake.params.module,
        params=snakemake.params.params,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        on_error=snakemake.params.on_error,
        threads=snakemake.threads,
    )
