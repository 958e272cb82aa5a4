"""Every figure rule (workflow/rules/figures.smk) → davae_study.plotting.render.render_rule

``params.renderer`` picks the figure, the rule's named inputs are its files, ``params.kwargs`` its options;
output 0 is the PNG (the PDF is written beside it).
"""
from davae_study.pipeline import logged
from davae_study.plotting.render import render_rule

with logged(snakemake.log[0]):
    render_rule(snakemake)
