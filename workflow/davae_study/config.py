"""Config validation with one clear line per problem.

The workflow validates its config with ``snakemake.utils.validate`` against
``workflow/schemas/config.schema.yaml`` (which also fills defaults); :func:`check_config` runs first and turns
the first schema violation, or a cross-reference the schema cannot express (an application naming a method
that has no entry under ``methods:``), into one line that says where and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the key and the fix."""


def load_schema(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _where(path) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def check_config(config: Mapping[str, Any], schema: Mapping[str, Any] | str | Path) -> None:
    """Raise :class:`ConfigError` with a one-line message for the first problem in ``config``."""
    if not isinstance(schema, Mapping):
        schema = load_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = _where(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted((err.schema.get("properties") or {}).keys())
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            raise ConfigError(f"config error at {where}: {err.message}{hint} (see config/README.md)")
        raise ConfigError(f"config error at {where}: {err.message} (see config/README.md)")
    methods = config.get("methods", {})
    for app, spec in config.get("applications", {}).items():
        for m in spec.get("methods", []):
            if m not in methods:
                raise ConfigError(
                    f"config error at applications.{app}.methods: {m!r} has no entry under methods: "
                    f"(known: {', '.join(sorted(methods))}); add methods.{m} or remove it"
                )
        for m in (spec.get("method_params") or {}):
            if m not in spec.get("methods", []):
                raise ConfigError(f"config error at applications.{app}.method_params.{m}: {m!r} is not in applications.{app}.methods")
    verdicts = config.get("verdicts") or {}
    for m in verdicts.get("judge") or []:
        if m not in methods:
            raise ConfigError(f"config error at verdicts.judge: {m!r} has no entry under methods: "
                              f"(known: {', '.join(sorted(methods))}); add methods.{m} or remove it")


def merged_method_params(config: Mapping[str, Any], app: str, method: str) -> dict[str, Any]:
    """A method's params: the ``methods:`` table's, updated by the application's ``method_params``."""
    params = dict(config["methods"][method].get("params") or {})
    params.update((config["applications"][app].get("method_params") or {}).get(method) or {})
    return params
