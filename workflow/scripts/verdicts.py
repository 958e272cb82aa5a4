"""rule verdicts → davae_study.verdicts.write_verdicts"""
from davae_study.pipeline import logged
from davae_study.verdicts import write_verdicts

with logged(snakemake.log[0]):
    files = snakemake.params.files
    write_verdicts(
        snakemake.output[0],
        claims=snakemake.params.claims,
        metrics=files["metrics"],
        repeats=files["repeats"],
        clusters=files["clusters"],
        scaling=files["scaling"] or None,
        app_methods=snakemake.params.app_methods,
        known_methods=snakemake.params.known_methods,
        settings=snakemake.params.settings,
        scaling_source=snakemake.params.scaling_source,
        scaling_methods=snakemake.params.scaling_methods,
    )
