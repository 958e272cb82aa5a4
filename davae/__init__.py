"""DAVAE: domain-adversarial variational autoencoder for single-cell data integration (PyTorch).

Quick use::

    import davae
    out = davae.integrate(adata, batch_key="batch")          # raw counts in X
    out.obsm["X_davae"], out.layers["davae_recovered"]

See ``docs/davae.md`` for the model, the presets and why the released preset does not integrate.
"""

from .api import integrate, integrate_with_model
from .model import DAVAE
from .preprocess import preprocess
from .presets import OVERRIDE_NAMES, PRESETS, DAVAEParams, get_params

__version__ = "0.1.0"

__all__ = ["integrate", "integrate_with_model", "DAVAE", "DAVAEParams", "PRESETS", "OVERRIDE_NAMES", "get_params", "preprocess",
           "__version__"]
