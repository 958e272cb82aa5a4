# Config loading and validation, and the input functions every rule file uses.
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

# The study library lives inside workflow/; make it importable without an install (make installs it too).
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))
from davae_study.config import ConfigError, check_config, merged_method_params  # noqa: E402

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    check_config(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
validate(config, schema=str(SCHEMA))

APPS = list(config["applications"])


wildcard_constraints:
    app="|".join(APPS),
    method="[A-Za-z0-9_]+",


def app_methods(app):
    return config["applications"][app]["methods"]


def app_input_files(wildcards):
    """Input files of an application (file key → path); download rules produce those under resources/."""
    return config["applications"][wildcards.app]["input"]["files"]


def method_entry(wildcards):
    if wildcards.method not in app_methods(wildcards.app):
        raise WorkflowError(
            f"method {wildcards.method!r} is not configured for application {wildcards.app!r} "
            f"(applications.{wildcards.app}.methods: {app_methods(wildcards.app)})"
        )
    return config["methods"][wildcards.method]


def method_params(wildcards):
    return merged_method_params(config, wildcards.app, wildcards.method)


def method_resource(key, default):
    def get(wildcards, attempt):
        value = config["methods"][wildcards.method].get("resources", {}).get(key, default)
        # memory and time grow with each retry (profiles set retries)
        return value * attempt if key in ("mem_mb", "runtime") else value

    return get


def _default_partition():
    """The run's default `slurm_partition` (profile or command line `default-resources`) as a Snakemake
    `Resource` to evaluate per job, None when the run sets none, or False when this Snakemake keeps its
    default resources in a form not read here (then methods without a partition of their own get none).

    `workflow.resource_settings` is the run's `snakemake.settings.types.ResourceSettings` (the settings
    object of Snakemake's Python API, as `workflow.config_settings` in the Snakefile); its public field
    `default_resources` holds what `--default-resources` / a profile's `default-resources` parsed to
    (Snakemake 9: a `snakemake.resources.Resources`, the same mapping that seeds every rule's resources).
    """
    settings = getattr(workflow, "resource_settings", None)
    if settings is None or not hasattr(settings, "default_resources"):
        return False
    defaults = settings.default_resources
    if defaults is None:  # no --default-resources and not a cluster run
        return None
    try:
        from snakemake.resources import Resource, Resources

        entry = Resources.from_mapping(defaults).get("slurm_partition")
    except (ImportError, AttributeError, TypeError):  # older releases (8.x) keep a DefaultResources object there
        return False
    if not isinstance(entry, Resource) or (not entry.is_evaluable() and entry.value in (None, "")):
        return None
    return entry


def method_partition():
    """The `slurm_partition` resource of rules integrate and scaling_integrate, from
    `methods.<name>.resources.slurm_partition`, as keyword arguments for the rule's `resources:`.

    Empty when no method names a partition: the rules then leave `slurm_partition` to the profile
    (`default-resources`, `set-resources`) as before. Otherwise each job gets its method's partition, and a
    method without one gets the run's default `slurm_partition` (profile / command line
    `default-resources`, evaluated for that job as Snakemake would have), or no `slurm_partition` at all
    when the run sets none: the slurm executor plugin then picks the best fit from
    `--slurm-partition-config` if given, else the cluster's default partition (`sinfo`'s `*`), else submits
    without `-p` (it treats an empty partition the same way). A rule-level value replaces the default
    resource for every job of the rule, which is why the default is re-read here. A profile's
    `set-resources: integrate: slurm_partition` still overrides every method (Snakemake applies it last).
    """
    if not any((entry.get("resources") or {}).get("slurm_partition") for entry in config["methods"].values()):
        return {}
    default = _default_partition()
    if default is False:
        logger.warning(
            "methods.<name>.resources.slurm_partition: cannot read this Snakemake's default resources; "
            "methods without a partition of their own go to the cluster's default partition, not the "
            "profile's default-resources slurm_partition"
        )

    def get(wildcards, **aux):
        # aux: input, attempt, threads, rulename, async_run (what Snakemake passes a resource function)
        own = (config["methods"][wildcards.method].get("resources") or {}).get("slurm_partition")
        if own:
            return str(own)
        if not default:
            return None  # a resource function returning None leaves the resource unset for this job
        return default.evaluate(wildcards, **aux).value

    return {"slurm_partition": get}


def methods_env(wildcards):
    """Conda env of the method rules: the CPU or the CUDA build of PyTorch (config conda_torch; --sdm conda)."""
    return "../../envs/methods-cuda.yaml" if config.get("conda_torch", "cpu") == "cuda" else "../../envs/methods.yaml"


def method_threads(wildcards):
    return config["methods"][wildcards.method].get("threads", 2)


def per_method(pattern):
    """Expand a results pattern over one application's methods."""

    def files(wildcards):
        return expand(pattern, app=wildcards.app, method=app_methods(wildcards.app))

    return files


def app_figures(app):
    return expand(
        "results/{app}/figures/{figure}.png", app=app, figure=config["applications"][app].get("figures", FIGURES)
    )


def all_outputs():
    out = expand("results/{app}/metrics.tsv", app=APPS)
    for app in APPS:
        # integrations are targets themselves: deleting one reruns it and what depends on it
        out += expand("results/{app}/integrated/{method}.h5ad", app=app, method=app_methods(app))
        out += app_figures(app)
    return out + ["results/summary.tsv", "results/figures/summary.png"]


# ---- figures (rules in figures.smk) -----------------------------------------------------------------------
from davae_study.plotting.workflow import (  # noqa: E402
    PAPER_GENE_ACTIVITY,
    PAPER_MARKER_UMAPS,
    PAPER_MARKERS,
    PAPER_SPATIAL_TYPES,
    figure_clusters,
    figure_file,
    figure_kwargs,
)

FIGURES = ["umap_grid", "ari", "kbet"]


def app_title(app):
    return config["applications"][app].get("title", app)


# ---- label transfer (rules in transfer.smk) ---------------------------------------------------------------
from davae_study.groundtruth import simulate_config, spatial_config, transfer_config  # noqa: E402


def transfer_apps():
    """Applications with a reference to transfer labels from."""
    return [a for a in APPS if "reference" in (config["applications"][a].get("transfer") or {})]


def spatial_apps():
    """Applications whose joint embedding is clustered for spatial maps."""
    return [a for a in APPS if (config["applications"][a].get("transfer") or {}).get("spatial")]


def transfer_truth(wildcards):
    """The application's ground-truth table (cell, cell_type, x, y, proportion:<type>…), if any."""
    path = (config["applications"][wildcards.app].get("transfer") or {}).get("truth")
    return [path] if path else []


def transfer_outputs():
    """Every transfer and spatial output of the configured applications (for rule all)."""
    out = []
    for app in transfer_apps():
        out += expand("results/{app}/transfer/{method}.{ext}", app=app, method=app_methods(app), ext=["tsv", "metrics.tsv"])
    for app in spatial_apps():
        out += expand("results/{app}/spatial/{method}.clusters.tsv", app=app, method=app_methods(app))
    return out


def transfer_metrics(wildcards):
    """Transfer metric tables of one application (empty when it has no reference), for aggregate_metrics."""
    if wildcards.app not in transfer_apps():
        return []
    return expand("results/{app}/transfer/{method}.metrics.tsv", app=wildcards.app, method=app_methods(wildcards.app))


# ---- runtime scaling, Fig 6f (rules in scaling.smk) -------------------------------------------------------
SCALING = config.get("scaling", {})


def _scaling_check():
    from davae_study.scaling import check_scaling_config

    try:
        check_scaling_config(SCALING, config.get("methods", {}), config.get("applications", {}))
    except ValueError as err:
        raise WorkflowError(str(err)) from None


_scaling_check()

SCALING_SIZES = [int(s) for s in SCALING.get("sizes", [])]
SCALING_METHODS = list(SCALING.get("methods", []))
SCALING_PER_1K = SCALING.get("resources_per_1k_cells", {})


wildcard_constraints:
    n_cells=r"\d+",


def scaling_source(wildcards):
    source = SCALING["source"]
    if source in config.get("applications", {}):
        return expand("results/{app}/prepared.h5ad", app=source)
    return source


def scaling_resource(key, default):
    """Method resources (methods.<name>.resources) raised to scaling.resources_per_1k_cells × cells/1000,
    times the attempt for memory and time (profiles set retries)."""

    def get(wildcards, attempt):
        base = config["methods"][wildcards.method].get("resources", {}).get(key, default)
        per_1k = SCALING_PER_1K.get(key)
        if per_1k is not None:
            base = max(base, int(per_1k * int(wildcards.n_cells) / 1000))
        return base * attempt if key in ("mem_mb", "runtime") else base

    return get


def scaling_outputs():
    if not SCALING:
        return []
    return ["results/scaling/benchmark.tsv", "results/scaling/growth.tsv", "results/scaling/runtime.png"]


# ---- reproduction verdicts (rule in verdicts.smk) ------------------------------------------------------------
from davae_study.verdicts import ClaimsError, application_map, load_claims  # noqa: E402

VERDICTS = config.get("verdicts") or {}


def _claims_path():
    """verdicts.claims; a relative path missing from the working directory is read from the workflow's own
    config/ (as the shipped claims table is when Snakemake runs with --directory elsewhere)."""
    path = Path(VERDICTS.get("claims", "config/claims.yaml"))
    if not path.is_absolute() and not path.exists() and (Path(workflow.basedir) / path).exists():
        return str(Path(workflow.basedir) / path)
    return str(path)


VERDICT_CLAIMS_FILE = _claims_path()


def _verdict_plan():
    """The claims and which applications of this config they are judged on (paper application -> here)."""
    if not VERDICTS:
        return [], {}
    try:
        claims = load_claims(VERDICT_CLAIMS_FILE)
    except ClaimsError as err:
        raise WorkflowError(str(err)) from None
    mapping, _ = application_map(VERDICTS, APPS, claims)
    return claims, mapping


VERDICT_CLAIMS, VERDICT_APPS = _verdict_plan()
# the applications judged here, each once (an analog may stand for one paper application)
JUDGED_APPS = list(dict.fromkeys(app for app, _ in VERDICT_APPS.values()))
# applications whose clusters tables are read (claims with source: spatial)
SPATIAL_JUDGED = [VERDICT_APPS[c["application"]][0] for c in VERDICT_CLAIMS
                  if c.get("source") == "spatial" and c["application"] in VERDICT_APPS]


def verdict_files():
    """The tables rule verdicts reads, by role (also its params, so input and mapping never disagree)."""
    files = {
        "metrics": {app: f"results/{app}/metrics.tsv" for app in JUDGED_APPS},
        "repeats": {app: expand("results/{app}/metrics/{method}.repeats.tsv", app=app, method=app_methods(app))
                    for app in JUDGED_APPS},
        "clusters": {app: {m: f"results/{app}/spatial/{m}.clusters.tsv" for m in app_methods(app)}
                     for app in dict.fromkeys(SPATIAL_JUDGED) if app in spatial_apps()},
        "scaling": {},
    }
    if SCALING and SCALING.get("source") in JUDGED_APPS:
        files["scaling"] = {"benchmark": "results/scaling/benchmark.tsv", "growth": "results/scaling/growth.tsv"}
    return files


def verdict_inputs(wildcards):
    """Every table verdict_files names, and the claims table itself (an edited claim reruns the verdicts)."""
    f = verdict_files()
    return ([VERDICT_CLAIMS_FILE] + list(f["metrics"].values()) + [p for ps in f["repeats"].values() for p in ps]
            + [p for ms in f["clusters"].values() for p in ms.values()] + list(f["scaling"].values()))


def verdict_outputs():
    return ["results/verdicts.tsv"] if VERDICTS else []
