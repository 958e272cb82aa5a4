"""DAVAE: domain-adversarial variational autoencoder for single-cell data integration (PyTorch).

Quick use::

    import davae
    out = davae.integrate(adata, batch_key="batch")          # raw counts in X
    out.obsm["X_davae"], out.layers["davae_recovered"]

See ``docs/davae.md`` for the model, the presets and why the released preset does not integrate.

The public names are imported on first use (torch and numpy with them), so that the ``davae`` command can
size the thread pools before those libraries load; ``import davae`` also prefers passive OpenMP waiting (see
:mod:`davae._threads`).
"""

import importlib
import sys
import types

from ._threads import prefer_passive_wait

prefer_passive_wait()

__version__ = "0.1.0"

_EXPORTS = {
    "integrate": "api", "integrate_with_model": "api", "DAVAE": "model", "preprocess": "preprocess",
    "DAVAEParams": "presets", "PRESETS": "presets", "OVERRIDE_NAMES": "presets", "get_params": "presets",
    "UnbridgedBatchesWarning": "prior",
}

__all__ = ["integrate", "integrate_with_model", "DAVAE", "DAVAEParams", "PRESETS", "OVERRIDE_NAMES", "get_params", "preprocess",
           "UnbridgedBatchesWarning", "__version__"]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _EXPORTS:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{self.__name__}.{_EXPORTS[name]}"), name)
        types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # importing the submodule davae.preprocess binds it here; davae.preprocess stays the function
        if name == "preprocess" and isinstance(value, types.ModuleType):
            return
        types.ModuleType.__setattr__(self, name, value)

    def __dir__(self):
        return sorted(set(types.ModuleType.__dir__(self)) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package
