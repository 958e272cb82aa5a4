"""Snakemake ``script:`` of the figure rules for Figs 4-6 (workflow/rules/figures.smk).

Runs :func:`davae_study.plotting.render.render_rule`: ``params.renderer`` picks the figure, the rule's named
inputs are its files, ``params.kwargs`` its options; output 0 is the PNG (the PDF is written beside it).
Importing this module does nothing: the body runs only when Snakemake executes it as a script.
"""

if "snakemake" in globals():
    from davae_study.pipeline import logged
    from davae_study.plotting.render import render_rule

    with logged(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
        render_rule(snakemake)  # noqa: F821
