import copy
import re

import pytest
import yaml

from davae_study.config import ConfigError, check_config, merged_method_params

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _load(name):
    with open(REPO / "config" / name) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("name", ["demo.yaml", "config.yaml", "scaling_offline.yaml"])
def test_shipped_configs_are_valid(name):
    check_config(_load(name), SCHEMA)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda c: c.__setitem__("sed", 1), "allowed keys"),
        (lambda c: c.__setitem__("seed", -1), "at seed"),
        (lambda c: c.__setitem__("device", "gpu"), "at device"),
        (lambda c: c["applications"]["samples"].__setitem__("methods", ["pca", "seurat"]), "'seurat' has no entry"),
        (lambda c: c["applications"]["samples"]["prepare"].__setitem__("n_top_genes", "many"), "n_top_genes"),
        (lambda c: c["applications"]["samples"]["input"].pop("reader"), "'reader' is a required property"),
        (lambda c: c["methods"]["pca"].__setitem__("resources", {"mem": 3}), r"at methods\.pca\.resources: .*'mem' was unexpected"),
        (lambda c: c["methods"]["pca"].__setitem__("resources", {"slurm_partition": "gpu; rm"}), "slurm_partition"),
        (lambda c: c["methods"]["pca"].__setitem__("resources", {"slurm_partition": 7}), "slurm_partition"),
        (lambda c: c["verdicts"].__setitem__("judge", ["davae", "davea"]), r"verdicts\.judge: 'davea' has no entry"),
        (lambda c: c["verdicts"].__setitem__("alpha", 2), r"at verdicts\.alpha"),
        (lambda c: c["metrics"].__setitem__("ari", {"kmeans_init": "k-means++"}),
         r"at metrics\.ari: 'kmeans_algorithm' is a required property"),
        (lambda c: c["metrics"].__setitem__("ari", {"kmeans_init": "k-means++", "kmeans_algorithm": "hartigan-wong"}),
         r"at metrics\.ari\.kmeans_algorithm: 'lloyd' was expected"),
    ],
)
def test_bad_config_one_line_error(mutate, where):
    cfg = copy.deepcopy(_load("demo.yaml"))
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        check_config(cfg, SCHEMA)
    msg = str(err.value)
    # one line, and it names where to look (parenthesised: `a and b or c` let any "add methods." message
    # through whatever its line count)
    assert "\n" not in msg, msg
    assert "config/README.md" in msg or "add methods." in msg, msg
    assert re.search(where, msg), msg


def test_method_params_merge():
    cfg = _load("demo.yaml")
    cfg["applications"]["samples"]["method_params"] = {"davae": {"epochs": 3}}
    params = merged_method_params(cfg, "samples", "davae")
    assert params["epochs"] == 3 and params["preset"] == "default"


def test_scvi_runs_beside_davae_in_every_application_and_on_the_gpu():
    """scVI is a method of every shipped application, asks for what DAVAE asks for (a GPU on a cluster),
    and is timed beside DAVAE in both scaling benchmarks."""
    for name in ("config.yaml", "demo.yaml"):
        cfg = _load(name)
        for app, entry in cfg["applications"].items():
            assert "scvi" in entry["methods"], f"{name}: {app}"
        assert cfg["methods"]["scvi"]["module"] == "davae_study.methods.scvi"
        assert cfg["methods"]["scvi"]["label"] == "scVI"
    paper = _load("config.yaml")
    assert paper["methods"]["scvi"]["resources"] == paper["methods"]["davae"]["resources"]
    assert paper["methods"]["scvi"]["resources"]["gpu"] == 1
    for name in ("config.yaml", "scaling_offline.yaml"):
        assert {"davae", "scvi"} <= set(_load(name)["scaling"]["methods"]), name


def test_kmeans_plus_plus_is_accepted_with_lloyd():
    cfg = copy.deepcopy(_load("demo.yaml"))
    cfg["metrics"]["ari"] = {"kmeans_init": "k-means++", "kmeans_algorithm": "lloyd"}
    check_config(cfg, SCHEMA)  # raises ConfigError if refused
