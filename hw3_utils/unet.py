"""The report's time-conditioned UNet: 3 down blocks (28, 14, 7), a 3x3 bottleneck, 3 up blocks.

Contract with the diffusion code: `model(x_t, t) -> predicted noise`, same shape as x_t.
Reference widths (model_channels=64): 64/128/256 down, 512 in the bottleneck,
8,130,755 parameters (checked in tests/test_unet.py).

With cfg.num_classes = 10 the UNet is class-conditional (classifier-free guidance, Ho & Salimans 2022):
`model(x_t, t, y)` adds the embedding of the label y (a digit 0..9, or the null label 10 for "no label")
to the time embedding that every block sees (`guidance.add_label_embedding`, task 6a); `model(x_t, t)`
is the null label's prediction. With num_classes = 0 (the report's model) it has no label embedding at all.
"""

from __future__ import annotations

import math  # noqa: F401 (unused in the student kit until task 2a is done)

import torch
from torch import nn
from torch.nn import functional as F  # noqa: F401 (the same, for task 2b)

from .config import Config, guidance_module


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal features of the timestep.

    t: (B,) int or float timesteps -> (B, dim) float32, [sin(t w_i), cos(t w_i)] with
    frequencies w_i = 10000^(-i / (dim/2 - 1)), i = 0 .. dim/2 - 1.
    """
    ### BEGIN SOLUTION 2a
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)
    ### END SOLUTION


class Block(nn.Module):
    """Conv3x3-GroupNorm-ReLU twice, with the time embedding added in between.

    x: (B, c_in, H, W), temb: (B, time_emb_dim) -> (B, c_out, H, W).
    """

    def __init__(self, c_in: int, c_out: int, time_emb_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, c_out)
        # The report: the embedding "is broadcast and added to the feature maps inside each
        # block"; each block projects it to its own width.
        self.time_proj = nn.Linear(time_emb_dim, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION 2b
        h = F.relu(self.norm1(self.conv1(x)))
        h = h + self.time_proj(temb)[:, :, None, None]
        return F.relu(self.norm2(self.conv2(h)))
        ### END SOLUTION


class UNet(nn.Module):
    """Noise predictor eps_theta(x_t, t) for 28x28 images (eps_theta(x_t, t, y) when cfg.num_classes > 0).

    x: (B, in_channels, 28, 28) float, t: (B,) int64 in [0, T-1] -> (B, in_channels, 28, 28).
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.image_shape = cfg.image_shape
        self.timesteps = cfg.timesteps
        self.time_emb_dim = cfg.time_emb_dim
        c1, c2, c3 = (cfg.model_channels * m for m in cfg.channel_mult)
        cb = cfg.model_channels * cfg.bottleneck_mult
        d, g = cfg.time_emb_dim, cfg.groups

        # Timestep: sinusoidal features -> Linear -> ReLU (report, section 1.1)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU())

        self.down1 = Block(cfg.in_channels, c1, d, g)  # 28x28
        self.down2 = Block(c1, c2, d, g)  # 14x14
        self.down3 = Block(c2, c3, d, g)  # 7x7
        self.bottleneck = Block(c3, cb, d, g)  # 3x3 (max-pool floors 7 to 3)

        # 3 -> 7 needs output_padding=1: a 2x2 stride-2 transposed conv doubles 3 to 6.
        self.up1 = nn.ConvTranspose2d(cb, c3, 2, stride=2, output_padding=1)
        self.up_block1 = Block(2 * c3, c3, d, g)  # 7x7, after concat with down3's output
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.up_block2 = Block(2 * c2, c2, d, g)  # 14x14
        self.up3 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.up_block3 = Block(2 * c1, c1, d, g)  # 28x28
        self.out = nn.Conv2d(c1, cfg.in_channels, 1)

        # The label embedding, last: every module above draws the same initial weights with or without it.
        # Zero at first, so a fresh conditional UNet predicts what the unconditional one would.
        self.num_classes = cfg.num_classes
        self.label_emb = nn.Embedding(cfg.num_classes + 1, d) if cfg.num_classes else None
        if self.label_emb is not None:
            nn.init.zeros_(self.label_emb.weight)

        # Off only inside CUDA graph capture, where reading t back to the host is not allowed.
        self.check_inputs = True

    def _validate(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> None:
        c, h, w = self.image_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(
                f"UNet expects x of shape (B, {c}, {h}, {w}) (MNIST as {c}-channel {h}x{w}), "
                f"got {tuple(x.shape)}; use hw3_utils.load_mnist's transforms or reshape the batch"
            )
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"UNet expects t of shape ({x.shape[0]},), one timestep per image, got {tuple(t.shape)}")
        if t.is_floating_point():
            raise ValueError(f"UNet expects integer timesteps, got dtype {t.dtype}")
        if y is not None:
            self._validate_labels(y, x.shape[0])
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            return
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi > self.timesteps - 1:
            raise ValueError(
                f"timesteps must lie in [0, {self.timesteps - 1}] (T={self.timesteps}), got values in [{lo}, {hi}]"
            )
        if y is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}] (the digits, then {self.num_classes} for "
                             f"no label), got values in [{int(y.min())}, {int(y.max())}]")

    def _validate_labels(self, y: torch.Tensor, batch: int) -> None:
        if self.label_emb is None:
            raise ValueError("this UNet is unconditional (num_classes=0): call it as model(x_t, t), or train a "
                             "conditional profile (e.g. cpu-cond) to ask for digits")
        if y.ndim != 1 or y.shape[0] != batch or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(f"UNet expects labels y of shape ({batch},), one integer per image, "
                             f"got {tuple(y.shape)} {y.dtype}")

    def embedding(self, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """What every block adds: the time MLP of the sinusoidal features, (B, time_emb_dim) float.

        Conditional UNet: plus the label's embedding (task 6a), y (B,) int64 in [0, num_classes];
        y None means the null label for every image.
        """
        temb = self.time_mlp(sinusoidal_embedding(t, self.time_emb_dim))
        if self.label_emb is None:
            return temb
        if y is None:
            y = torch.full(t.shape, self.num_classes, dtype=torch.long, device=t.device)
        return guidance_module().add_label_embedding(temb, y, self.label_emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, 28, 28) float, t (B,) int64, y (B,) int64 labels (conditional UNet only) -> eps-hat like x."""
        if self.check_inputs:
            self._validate(x, t, y)
        # given: what every block adds (the time embedding, plus the label's in a conditional UNet); use it as it is
        temb = self.embedding(t, y)  # noqa: F841 (unused in the student kit until task 2b is done)
        ### BEGIN SOLUTION 2b
        s1 = self.down1(x, temb)
        s2 = self.down2(F.max_pool2d(s1, 2), temb)
        s3 = self.down3(F.max_pool2d(s2, 2), temb)
        h = self.bottleneck(F.max_pool2d(s3, 2), temb)

        h = self.up_block1(torch.cat([self.up1(h), s3], dim=1), temb)
        h = self.up_block2(torch.cat([self.up2(h), s2], dim=1), temb)
        h = self.up_block3(torch.cat([self.up3(h), s1], dim=1), temb)
        return self.out(h)
        ### END SOLUTION


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def shape_walk(model: UNet, x: torch.Tensor, t: torch.Tensor) -> list[tuple[str, tuple]]:
    """Output shape of every stage of one forward pass, in order: [(stage name, shape), ...].

    For teaching (notebook 02): forward hooks on the blocks and up-convolutions record shapes.
    """
    names = ["down1", "down2", "down3", "bottleneck", "up1", "up_block1",
             "up2", "up_block2", "up3", "up_block3", "out"]
    seen: list[tuple[str, tuple]] = []
    hooks = [getattr(model, n).register_forward_hook(
        lambda _m, _i, out, n=n: seen.append((n, tuple(out.shape)))) for n in names]
    try:
        with torch.no_grad():
            model(x, t)
    finally:
        for h in hooks:
            h.remove()
    return seen
