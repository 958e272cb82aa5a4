"""DESC's networks: the stacked autoencoder and the Student-t clustering layer (PyTorch).

Architecture follows eleozzr/desc 2.1.1 (Keras): encoder hidden layers ReLU, bottleneck ``tanh``; decoder
hidden layers ReLU, output ``tanh``; Glorot-uniform weights and zero biases (Keras' Dense defaults).
Layer-wise denoising stacks share their ``Linear`` modules with the autoencoder, so pretraining a stack
trains the autoencoder's weights directly (the original copies them over afterwards; same effect).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": nn.functional.elu,
    "linear": _identity,
}


def get_dims(n_cells: int, n_genes: int) -> list[int]:
    """Encoder layer sizes DESC picks from the number of cells (``desc.models.desc.getdims``)."""
    if n_cells > 20000:
        hidden = [128, 32]
    elif n_cells > 10000:
        hidden = [64, 32]
    elif n_cells > 5000:
        hidden = [32, 16]
    elif n_cells > 2000:
        hidden = [128]
    elif n_cells > 500:
        hidden = [64]
    else:
        hidden = [16]
    return [int(n_genes), *hidden]


def _activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


def _glorot_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DescAutoencoder(nn.Module):
    """Symmetric stacked autoencoder ``dims[0] -> ... -> dims[-1] -> ... -> dims[0]``.

    Parameters
    ----------
    dims
        Encoder sizes including the input, e.g. ``[n_genes, 64]``.
    activation
        Activation of the hidden (non-bottleneck, non-output) layers; DESC: ``relu``.
    actincenter
        Activation of the bottleneck and of the output layer; DESC: ``tanh``.
    drop_rate
        Dropout rate of the denoising stacks used in layer-wise pretraining (not in the full model).
    """

    def __init__(self, dims: list[int], activation: str = "relu", actincenter: str = "tanh", drop_rate: float = 0.2):
        super().__init__()
        if len(dims) < 2 or any(int(d) < 1 for d in dims):
            raise ValueError(f"dims must list >= 2 positive layer sizes, got {dims}")
        self.dims = [int(d) for d in dims]
        self.n_stacks = len(dims) - 1
        self.activation, self.actincenter, self.drop_rate = activation, actincenter, float(drop_rate)
        last = self.n_stacks - 1
        self._enc_acts = [_activation(actincenter if i == last else activation) for i in range(self.n_stacks)]
        self._dec_acts = [_activation(actincenter if i == 0 else activation) for i in range(self.n_stacks)]
        self.encoders = nn.ModuleList(_glorot_linear(dims[i], dims[i + 1]) for i in range(self.n_stacks))
        # decoders[i] maps dims[i + 1] -> dims[i] (Keras name decoder_i)
        self.decoders = nn.ModuleList(_glorot_linear(dims[i + 1], dims[i]) for i in range(self.n_stacks))
        self.dropout = nn.Dropout(self.drop_rate)

    def encode_layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self._enc_acts[i](self.encoders[i](h))

    def decode_layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return self._dec_acts[i](self.decoders[i](h))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_stacks):
            x = self.encode_layer(i, x)
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        for i in reversed(range(self.n_stacks)):
            z = self.decode_layer(i, z)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def stack_forward(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Denoising stack ``i``: Dropout -> encoder_i -> act -> Dropout -> decoder_i -> act."""
        return self.decode_layer(i, self.dropout(self.encode_layer(i, self.dropout(h))))

    def stack_parameters(self, i: int):
        return [*self.encoders[i].parameters(), *self.decoders[i].parameters()]

    def encoder_parameters(self):
        return [p for layer in self.encoders for p in layer.parameters()]


def student_t(z: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft assignments ``q_ij ∝ (1 + ||z_i - mu_j||² / alpha) ** (-(alpha + 1) / 2)``, rows summing to 1."""
    d2 = torch.cdist(z, centres).pow(2) if z.shape[0] > 4096 else ((z[:, None, :] - centres[None]) ** 2).sum(-1)
    q = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(dim=1, keepdim=True)


def target_distribution(q):
    """DEC/DESC auxiliary target ``p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j')`` with ``f_j = Σ_i q_ij``.

    Works on a ``numpy`` array or a ``torch`` tensor.
    """
    weight = q**2 / q.sum(0)
    return weight / weight.sum(1, keepdims=True) if isinstance(q, np.ndarray) else weight / weight.sum(1, keepdim=True)


class ClusteringLayer(nn.Module):
    """Trainable cluster centres; maps embeddings to Student-t soft assignments."""

    def __init__(self, centres: np.ndarray | torch.Tensor, alpha: float = 1.0):
        super().__init__()
        self.centres = nn.Parameter(torch.as_tensor(np.asarray(centres), dtype=torch.float32).clone())
        self.alpha = float(alpha)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return student_t(z, self.centres, self.alpha)


class DescClusterer(nn.Module):
    """Encoder of a pretrained :class:`DescAutoencoder` followed by a :class:`ClusteringLayer`."""

    def __init__(self, autoencoder: DescAutoencoder, centres: np.ndarray, alpha: float = 1.0):
        super().__init__()
        self.autoencoder = autoencoder
        self.clustering = ClusteringLayer(centres, alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clustering(self.autoencoder.encode(x))

    def trainable_parameters(self):
        """Encoder weights and centres (the decoder takes no part in the clustering stage)."""
        return [*self.autoencoder.encoder_parameters(), self.clustering.centres]
