"""rule prepare → davae_study.pipeline.prepare_application"""
from davae_study.pipeline import logged, prepare_application

with logged(snakemake.log[0]):
    prepare_application(
        dict(snakemake.input),
        snakemake.params.input_spec,
        snakemake.params.prepare,
        out_h5ad=snakemake.output.h5ad,
        out_obs=snakemake.output.obs,
        out_provenance=snakemake.output.provenance,
        application=snakemake.wildcards.app,
        sources=snakemake.params.sources,
        lock_path=snakemake.params.lock,
    )
