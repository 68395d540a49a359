"""Classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598): the conditional UNet's labels, and the guided
noise prediction. Notebook 06, tasks 6a and 6b.

Labels: 0 .. 9 are the digits and `null` (the config's num_classes, 10) means "no label". One network learns
both eps(x_t, t, y) and eps(x_t, t, null): in training a share p of the labels is replaced by the null label
(`drop_labels`); the label's embedding is added to the time embedding every block sees (`add_label_embedding`).
Sampling mixes the two predictions (`guided_eps`, eq. 6 of the paper with w the guidance weight):

    eps-tilde(x_t, t, y) = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null)

w = 0 is the plain conditional model; larger w trades variety for digits that read more clearly as y.
The library calls these three: `UNet.embedding`, `train.train_step` and `sampling.guided`.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_labels(y: torch.Tensor, p: float, null: int, u: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout for training: label i becomes the null label where its uniform draw u_i < p, else stays y_i.

    y: (B,) int64 digits in [0, null - 1]; p: the share to drop, in [0, 1]; null: the null label;
    u: (B,) float in [0, 1), drawn from `generator` when None. Returns (B,) int64, y itself left unchanged.
    """
    if u is None:
        u = torch.rand(y.shape, device=y.device, generator=generator)
    ### BEGIN SOLUTION 6a
    return torch.where(u < p, torch.full_like(y, null), y)
    ### END SOLUTION


def add_label_embedding(temb: torch.Tensor, y: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
    """The conditioning: the time embedding plus the label's row of the embedding table.

    temb: (B, D) float; y: (B,) int64 in [0, null] (null included: it has a row of its own);
    table: nn.Embedding(null + 1, D). Returns (B, D) float.
    """
    ### BEGIN SOLUTION 6a
    return temb + table(y)
    ### END SOLUTION


def guided_eps(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w: float, null: int) -> torch.Tensor:
    """The guided noise prediction eps-tilde = (1 + w) eps(x_t, t, y) - w eps(x_t, t, null).

    model(x, t, y) -> eps: a conditional noise predictor; x_t: (B, C, H, W) float; t: (B,) int64;
    y: (B,) int64 digits; w: the guidance weight (a float >= 0); null: the null label.
    Returns (B, C, H, W) float32.
    """
    ### BEGIN SOLUTION 6b
    # two passes of B: on a CPU no slower than one of 2B (docs/decisions/guidance-two-calls.md)
    eps_cond = model(x_t, t, y).float()
    eps_null = model(x_t, t, torch.full_like(y, null)).float()
    return (1 + w) * eps_cond - w * eps_null
    ### END SOLUTION
