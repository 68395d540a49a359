"""GPU fast path: the same training step and the same model call, captured once as CUDA graphs.

At batch 128 a step of this small UNet is mostly kernel-launch overhead, so replaying a
captured graph (one launch) instead of ~400 separate kernels is where the speed comes from.
Nothing here changes the math: `TrainStep` runs `DDPM.loss`, backward and Adam exactly as the
eager loop does, and `GraphedModel` keeps the contract `model(x_t, t) -> predicted noise`.
On the CPU (or with graphs=False) both simply run eagerly, which is what the tests exercise.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled, else a no-op context.

    cache_enabled=False because autocast's weight cache must not outlive a graph capture.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


class TrainStep:
    """One optimisation step on a fixed-shape batch: loss, backward, optimizer.step().

    Call with x0 (B, C, H, W), t (B,) int64, noise like x0, weights (B,) float (per-image loss
    weights summing to 1; zero for padding) or None for the plain mean (eager only), and for a
    conditional model y (B,) int64 labels, bound to the model the loss calls (`DDPM.loss` stays
    model-agnostic). Returns the loss as a 0-d device tensor (no sync).
    With graphs=True on CUDA, the first `warmup` calls run eagerly (real steps, on a side
    stream as CUDA requires), the next call captures the step into a CUDA graph, and every
    later call copies its inputs into the graph's static buffers and replays it.
    """

    def __init__(self, model: nn.Module, ddpm, optimizer: torch.optim.Optimizer,
                 graphs: bool = False, amp_bf16: bool = False, warmup: int = 3):
        self.model, self.ddpm, self.optimizer = model, ddpm, optimizer
        self.device = next(model.parameters()).device
        self.graphs = graphs and self.device.type == "cuda"
        self.amp = amp_bf16
        self.warmup = warmup
        self.calls = 0
        self.graph = None
        self.static = None

    def _net(self, y):
        """The noise predictor the loss calls: the model, or with labels y the model with y bound."""
        return self.model if y is None else (lambda x_t, t: self.model(x_t, t, y))

    def _eager(self, x0, t, noise, weights, y=None):
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            loss = self.ddpm.loss(self._net(y), x0, t=t, noise=noise, weights=weights)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _capture(self, x0, t, noise, weights, y=None):
        self.static = [v.clone() for v in (x0, t, noise, weights, *(() if y is None else (y,)))]
        self.graph = torch.cuda.CUDAGraph()
        # grads allocated inside the capture live in the graph's pool and are overwritten per replay
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            with autocast(self.device, self.amp):
                net = self._net(None if y is None else self.static[4])
                loss = self.ddpm.loss(net, *self.static[:1], t=self.static[1],
                                      noise=self.static[2], weights=self.static[3])
            loss.backward()
            self.optimizer.step()
        self.static_loss = loss.detach()

    def __call__(self, x0, t, noise, weights, y=None):
        self.calls += 1
        if not self.graphs:
            return self._eager(x0, t, noise, weights, y)
        if self.graph is None and self.calls <= self.warmup:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                loss = self._eager(x0, t, noise, weights, y)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return loss
        if self.graph is None:
            self._capture(x0, t, noise, weights, y)  # records only: the replay below does this step
        for buf, value in zip(self.static, (x0, t, noise, weights, *(() if y is None else (y,)))):
            buf.copy_(value)
        self.graph.replay()
        return self.static_loss.clone()


class GraphedModel(nn.Module):
    """`model(x_t, t) -> eps` (or a conditional model's `model(x_t, t, y)`) for inference, replayed from a CUDA
    graph for one batch shape.

    Calls with another shape (the last, smaller batch), or with labels where the graph has none or the reverse,
    run the model eagerly. Same outputs as
    the eager model up to floating-point scheduling; on the CPU, or with graphs=False, it is the
    eager model (under bf16 autocast when amp_bf16).
    """

    def __init__(self, model: nn.Module, amp_bf16: bool = False, warmup: int = 2, graphs: bool = True):
        super().__init__()
        self.model = model
        self.graphs = graphs
        self.amp = amp_bf16
        self.warmup = warmup
        self.device = next(model.parameters()).device
        self.graph = None
        self.shape = None

    @torch.no_grad()
    def _capture(self, *inputs):
        self.static = [v.clone() for v in inputs]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                with autocast(self.device, self.amp):
                    self.model(*self.static)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            with autocast(self.device, self.amp):
                self.static_out = self.model(*self.static).float()
        self.shape = (tuple(inputs[0].shape), len(inputs))

    @torch.no_grad()
    def forward(self, x, t, y=None):
        inputs = (x, t) if y is None else (x, t, y)
        if not self.graphs or self.device.type != "cuda" or (
                self.graph is not None and (tuple(x.shape), len(inputs)) != self.shape):
            with autocast(self.device, self.amp):
                return self.model(*inputs).float()
        if self.graph is None:
            if hasattr(self.model, "_validate"):  # replays skip the UNet's checks: check the first call
                self.model._validate(*inputs)
            self._capture(*inputs)
        for buf, value in zip(self.static, inputs):
            buf.copy_(value)
        self.graph.replay()
        return self.static_out.clone()
