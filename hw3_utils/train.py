"""Training: the report's loop (Adam, batch 128, L_simple) with EMA, checkpoints and resume.

Every epoch ends with an atomic checkpoint (model, EMA, optimizer, epoch, step, RNG state,
config, loss history) under `<run_dir>/checkpoints/`; the two newest are kept. `train_model`
resumes from the newest readable one, so re-running after a disconnect continues where it
stopped, with the same data order and random draws as an uninterrupted run.

`train_model` is made of parts that others (bench/cpu_ablation.py) train with too:
- `new_state` (model, EMA, Adam, generator: a `TrainState`), `restore` and `save_checkpoint` (the checkpoint);
- `training_data`, then per epoch `epoch_batches` of (x0, labels, weights): `tensor_batches` (fixed-shape, the
  short last batch padded) or `loader_batches` (the report's DataLoader);
- `train_epoch`: `train_step` (Algorithm 1's step at the learning rate `lr_at`, then `ema_update`) per batch,
  the NaN check and the step log every cfg.log_every steps. A conditional config (cfg.num_classes > 0) trains
  on the labels, a share cfg.label_dropout of them replaced by the null label each step (classifier-free
  guidance; the draws come from the run's generator, so a resumed run stays bit-exact).

The function is `train_model`, not `train`, so that `hw3_utils.train` stays this module.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .atomic import atomic_write
from .config import MODEL_FIELDS, Config, config_diff, guidance_module
from .cuda_graphs import TrainStep
from .data import epoch_permutation, load_labels, load_mnist, load_tensor, make_loader, subset
from .diffusion import DDPM
from .runfolder import checkpoint_dir, checkpoint_path, checkpoint_paths, config_path
from .unet import UNet

KEEP_CHECKPOINTS = 2
# A resumed run must train the same way as the run that wrote the checkpoint; the other
# fields (epochs, sampling, FID, logging) may change between sessions.
# (tensor_data and cuda_graphs may change: both data paths give the same batches in the same order.)
TRAIN_FIELDS = MODEL_FIELDS + ("beta_start", "beta_end", "train_subset", "batch_size", "lr",
                               "adam_betas", "lr_warmup_steps", "lr_decay", "ema_decay", "seed", "amp_bf16",
                               "label_dropout")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model or run."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What `train_model` returns: the raw and EMA models, losses, where it saved.

    history: per-epoch mean losses; loss_log: [(step, mean loss of the steps since the previous
    entry)], one entry every cfg.log_every steps and at the end of each epoch.
    seconds: this call's wall time (0 when the run was already trained); total_seconds: the training time of
    every session of the run up to its newest checkpoint, as the checkpoint records it.
    """

    model: UNet
    ema: UNet
    ddpm: DDPM
    cfg: Config
    history: list[float] = field(default_factory=list)
    run_dir: Path | None = None
    step: int = 0
    seconds: float = 0.0
    loss_log: list[tuple[int, float]] = field(default_factory=list)
    total_seconds: float = 0.0


def lr_at(cfg: Config, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step `step` (1-based) of `total_steps`: cfg.lr, or with
    cfg.lr_warmup_steps a linear ramp up to it, then with lr_decay="cosine" a half cosine to 0.

    A pure function of the step, so a resumed run follows the same schedule.
    """
    if cfg.lr_warmup_steps and step <= cfg.lr_warmup_steps:
        return cfg.lr * step / cfg.lr_warmup_steps
    if cfg.lr_decay == "cosine":
        span = max(1, total_steps - cfg.lr_warmup_steps)
        done = min(1.0, (step - cfg.lr_warmup_steps) / span)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    return cfg.lr


def uses_tensor_data(cfg: Config) -> bool:
    """Hold the training set as one tensor (default) instead of the report's PIL DataLoader.

    On by default everywhere: on a GPU it feeds the CUDA graph, and on a CPU the DataLoader's
    PIL workers compete with training for the same cores (bench/cpu_speed.py measures both).
    """
    return True if cfg.tensor_data is None else cfg.tensor_data


def uses_cuda_graphs(cfg: Config, device: torch.device) -> bool:
    """Replay the training step as a CUDA graph: on CUDA with tensor data and a constant learning
    rate (a captured step bakes its learning rate in), unless cfg.cuda_graphs says otherwise."""
    if device.type != "cuda" or not uses_tensor_data(cfg):
        return False
    constant_lr = cfg.lr_warmup_steps == 0 and cfg.lr_decay == "none"
    return constant_lr if cfg.cuda_graphs is None else (cfg.cuda_graphs and constant_lr)


def pick_device(device=None) -> torch.device:
    """The argument, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(cfg: Config, device=None) -> UNet:
    """A freshly initialised UNet for `cfg`, seeded by cfg.seed so two builds are identical."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = UNet(cfg)
    model.config = cfg
    device = pick_device(device)
    model = model.to(device)
    # the same values either way: only the memory layout of the weights (and so of the activations) changes
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


# checkpoints -------------------------------------------------------------------------------
def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, fsync, then rename over `path`: never a half-written file."""
    path = Path(path)
    try:
        atomic_write(path, lambda f: torch.save(obj, f), durable=True)
    except OSError as err:
        raise OSError(
            f"could not write checkpoint {path} ({err}); the previous checkpoints in {path.parent} "
            "are kept. Free disk space (or choose another --out) and run again to resume."
        ) from err


def load_checkpoint(path, map_location="cpu", mmap: bool = False) -> dict:
    """Read a checkpoint written by `train_model`; a truncated or foreign file raises CheckpointError.

    mmap=True maps the file instead of reading it: only the small pickled part is read now, each
    tensor's bytes when first used (see `checkpoint_info`, which uses it to read the header only).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train first (notebook 04 or `python -m hw3_utils train`)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {str(err)[:200]}). "
            "Delete it: training then resumes from the previous checkpoint in that folder."
        ) from err
    missing = {"model", "ema", "config", "epoch"} - set(ckpt) if isinstance(ckpt, dict) else {"model"}
    if missing:
        raise CheckpointError(f"{path} is not an hw3_utils checkpoint (missing {sorted(missing)})")
    return ckpt


def _newest_readable(run_dir, read) -> tuple[Path, object] | None:
    """read(path) on the run's checkpoints, newest first, skipping (with a warning) unreadable ones."""
    paths = checkpoint_paths(run_dir)
    errors = []
    for p in paths:
        try:
            return p, read(p)
        except CheckpointError as err:
            warnings.warn(f"skipping unreadable checkpoint: {err}", stacklevel=3)
            errors.append(str(err))
    if errors:
        raise CheckpointError(
            f"none of the {len(paths)} checkpoints in {checkpoint_dir(run_dir)} can be read:\n"
            + "\n".join(errors) + "\nStart a new run with another --out folder."
        )
    return None


def load_newest_checkpoint(run_dir, map_location="cpu") -> tuple[Path, dict] | None:
    """The newest readable checkpoint of a run, loaded whole, skipping (with a warning) unreadable ones."""
    return _newest_readable(run_dir, lambda p: load_checkpoint(p, map_location))


INFO_KEYS = ("epoch", "step", "config", "history")


def checkpoint_info(path) -> dict:
    """The small fields of a checkpoint (epoch, step, config, history), without reading its tensors.

    The file is memory-mapped, only its pickled header is read, and no tensor outlives the call
    (a mapping kept alive would crash the process if the file were later truncated in place).
    """
    ckpt = load_checkpoint(path, mmap=True)
    return {k: ckpt[k] for k in INFO_KEYS if k in ckpt}


def newest_checkpoint_info(run_dir) -> tuple[Path, dict] | None:
    """(path, checkpoint_info) of the newest readable checkpoint: kilobytes read, not the whole file."""
    return _newest_readable(run_dir, checkpoint_info)


def _check_compatible(saved: Config, cfg: Config, fields, path) -> None:
    diff = config_diff(saved, cfg, fields)
    if diff:
        rows = "\n".join(f"  {k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        kind = lambda c: "a class-conditional" if c.num_classes else "an unconditional"  # noqa: E731
        which = (f"It holds {kind(saved)} model and the config asks for {kind(cfg)} one: each kind trains in the "
                 f"run folder of its own profile (runs/{cfg.profile}/).\n" if "num_classes" in diff else "")
        raise CheckpointError(
            f"checkpoint {path} was made with a different config:\n{rows}\n{which}"
            "Use the checkpoint's config (Config.from_dict(ckpt['config'])) or a new run folder."
        )


def _load_weights(model: UNet, state: dict, path) -> None:
    """model.load_state_dict(state), or CheckpointError when the weights do not fit the model (a file edited
    by hand, a conditional model's weights under an unconditional config or the reverse)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path} do not fit a model of its config ({str(err)[:300]}); "
                              "it was not written by hw3_utils: train again in a new run folder") from err


def load_model(source, which: str = "ema", device=None, cfg: Config | None = None) -> UNet:
    """Rebuild a UNet from a checkpoint file or run folder and load its `ema` or `model` weights.

    With `cfg`, the checkpoint's model fields must match it (else CheckpointError listing them).
    """
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    source = Path(source)
    if source.is_dir() or source.suffix != ".pt":  # a run folder, possibly not created yet
        found = load_newest_checkpoint(source)
        if found is None:
            raise CheckpointError(f"no checkpoints in {checkpoint_dir(source)}; train first (notebook 04)")
        path, ckpt = found
    else:
        path, ckpt = source, load_checkpoint(source)
    saved = Config.from_dict(ckpt["config"])
    if cfg is not None:
        _check_compatible(saved, cfg, MODEL_FIELDS, path)
    model = build_model(saved, device)
    _load_weights(model, ckpt[which], path)
    return model.eval()


# training ----------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What training carries from one step to the next, and what a checkpoint saves with the config.

    total_steps: the length of the lr schedule (`lr_at`), set by whoever drives the epochs.
    seconds: the wall time of the training sessions so far, summed across resumes.
    """

    model: UNet
    ema: UNet
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    epoch: int = 0
    step: int = 0
    history: list[float] = field(default_factory=list)
    loss_log: list[tuple[int, float]] = field(default_factory=list)
    total_steps: int = 0
    seconds: float = 0.0


def new_state(cfg: Config, device=None, graphs: bool = False) -> TrainState:
    """A fresh run's state: the seeded UNet, its EMA copy, the run's Adam and a generator seeded by cfg.seed."""
    device = pick_device(device)
    model = build_model(cfg, device)
    ema = copy.deepcopy(model).requires_grad_(False)
    return TrainState(model, ema, make_optimizer(model, cfg, graphs), torch.Generator(device).manual_seed(cfg.seed))


def ema_update(ema: UNet, model: UNet, step: int, decay: float) -> None:
    """ema <- d * ema + (1 - d) * model after optimiser step `step` (1-based), d = min(decay, (1 + step) / (10 + step)).

    The warm-up (as in many DDPM codebases) lets the EMA follow the weights closely early on, so short
    runs (the cpu profile, the smoke twins) still get a meaningful EMA.
    """
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - d)


def make_optimizer(model: UNet, cfg: Config, graphs: bool = False) -> torch.optim.Adam:
    """The run's Adam (cfg.lr, cfg.adam_betas) over `model`'s parameters, in torch's fused form where it has one.

    Fused Adam updates every parameter in one kernel: the same update as the default, to float rounding
    (tests/test_train.py), and on a CPU no slower than the default's one parameter at a time
    (bench/cpu_speed.py --only-kit-step). graphs: capturable too, so that the step count stays on the GPU
    and the whole step can live in a CUDA graph.
    """
    device = next(model.parameters()).device
    kwargs = dict(fused=True) if device.type in ("cpu", "cuda") else {}
    if graphs:
        kwargs["capturable"] = True
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, **kwargs)


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Put each of the optimiser's per-parameter tensors (Adam's moments) in its parameter's memory layout.

    Fused Adam walks a parameter and its moments as flat arrays in the same order, so moments saved in
    another layout (a run trained in NCHW, resumed with channels_last weights) would update the wrong
    elements without an error (tests/test_train.py).
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, requires_grad=False).copy_(value)


def restore(state: TrainState, cfg: Config, run_dir) -> Path | None:
    """Load the newest readable checkpoint of `run_dir` into `state`; returns its path (None: nothing to resume).

    Weights, EMA, Adam, both generators, epoch, step and the logs come back as saved, so the run goes on
    exactly as if it had never stopped. CheckpointError when the checkpoint trained another way (TRAIN_FIELDS).
    """
    found = load_newest_checkpoint(run_dir)
    if found is None:
        return None
    path, ckpt = found
    _check_compatible(Config.from_dict(ckpt["config"]), cfg, TRAIN_FIELDS, path)
    _load_weights(state.model, ckpt["model"], path)
    _load_weights(state.ema, ckpt["ema"], path)
    saved = ckpt["optimizer"]
    # load_state_dict would also restore the saving run's fused/capturable flags: keep this
    # run's, so a run started on the CPU can resume on a GPU with its CUDA-graph step
    for group in saved["param_groups"]:
        group.update({k: state.optimizer.defaults[k] for k in ("fused", "capturable", "foreach")})
    state.optimizer.load_state_dict(saved)
    _match_state_layout(state.optimizer)
    state.gen.set_state(ckpt["rng"]["train"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    state.epoch, state.step, state.history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
    # a checkpoint without a step log resumes with an empty one
    state.loss_log = [(int(s), float(v)) for s, v in ckpt.get("loss_log", [])]
    state.seconds = float(ckpt.get("seconds", 0.0))  # a checkpoint without it resumes from 0
    return path


def save_checkpoint(state: TrainState, cfg: Config, run_dir) -> Path:
    """Write the state as the run's checkpoint of its step (atomically), then keep only the KEEP_CHECKPOINTS newest."""
    ckpt = {
        "model": state.model.state_dict(), "ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(), "epoch": state.epoch, "step": state.step,
        "rng": {"train": state.gen.get_state(), "torch": torch.get_rng_state()},
        "config": cfg.to_dict(), "history": state.history, "loss_log": state.loss_log, "seconds": state.seconds,
    }
    path = checkpoint_path(run_dir, state.step)
    atomic_save(ckpt, path)
    for old in checkpoint_paths(run_dir)[KEEP_CHECKPOINTS:]:
        old.unlink()
    return path


def training_data(cfg: Config, device, data_root=None, tensor_data: bool = True):
    """(dataset, data, labels): the training (sub)set, and with tensor_data all of it on `device` as one tensor of
    images (N, C, H, W) and one of labels (N,) int64 in item order (else None, None: the DataLoader carries both).

    ValueError when the data transform (task 1) gives images of another shape than the profile trains on.
    """
    dataset = subset(load_mnist(data_root, train=True, in_channels=cfg.in_channels), cfg.train_subset)
    data = load_tensor(dataset, device, cfg.num_workers) if tensor_data else None
    labels = load_labels(dataset, device) if tensor_data else None
    first = data[:1] if tensor_data else dataset[0][0].unsqueeze(0)
    if tuple(first.shape[1:]) != cfg.image_shape:
        raise ValueError(f"the data transform (Task 1, mnist_transform) gives images of shape "
                         f"{tuple(first.shape[1:])}, but the '{cfg.profile}' profile trains on {cfg.image_shape}: "
                         f"build cfg.in_channels={cfg.in_channels} channel(s) from the grey image")
    return dataset, data, labels


def tensor_batches(data: torch.Tensor, cfg: Config, epoch: int, labels: torch.Tensor | None = None):
    """One epoch of (x0, y, weights) from the training set held as one tensor, in `epoch_permutation` order.

    x0: (B, C, H, W) with B = cfg.batch_size for every batch (a fixed shape for the CUDA graph): the short
    last batch is padded with copies of its first image. y: (B,) int64, the same rows of `labels` ((N,), the
    images' labels), or None without labels. weights: (B,) float, 1/real on the real images and 0 on the
    padding, so every batch's loss is the mean over its real images.
    """
    B, n, device = cfg.batch_size, len(data), data.device
    order = epoch_permutation(n, cfg.seed, epoch).to(device)
    full = torch.full((B,), 1.0 / B, device=device)
    for start in range(0, n, B):
        idx = order[start:start + B]
        real = idx.shape[0]
        if real == B:
            weights = full
        else:
            idx = torch.cat([idx, idx[:1].expand(B - real)])
            weights = (torch.arange(B, device=device) < real).float() / real
        yield data[idx], (None if labels is None else labels[idx]), weights


def loader_batches(dataset, cfg: Config, epoch: int, device):
    """One epoch of (x0, y, None) from the report's DataLoader (`make_loader`), x0 and the labels y moved to
    `device`; None weights: the report's plain mean loss."""
    for x0, y in make_loader(cfg, dataset, epoch, device=device):
        yield x0.to(device, non_blocking=True), y.to(device, non_blocking=True), None


def epoch_batches(cfg: Config, epoch: int, dataset, data: torch.Tensor | None, device, labels=None):
    """The epoch's (x0, y, weights): `tensor_batches` when the set is held as one tensor (data, with its labels),
    else `loader_batches`."""
    if data is not None:
        return tensor_batches(data, cfg, epoch, labels)
    return loader_batches(dataset, cfg, epoch, device)


def steps_per_epoch(n: int, cfg: Config) -> int:
    """Optimiser steps in one epoch of n images: the short last batch is a step too."""
    return math.ceil(n / cfg.batch_size)


def train_step(state: TrainState, cfg: Config, step_fn, x0: torch.Tensor, weights, y=None) -> torch.Tensor:
    """One step of Algorithm 1 on the batch x0: draw t and eps from the run's generator, set the step's
    learning rate, take the optimiser step (`step_fn`, a TrainStep), then update the EMA.

    Conditional config: y (B,) int64, the batch's labels, of which `guidance.drop_labels` replaces a share
    cfg.label_dropout by the null label (its uniform draws from the run's generator, after t and eps).
    An unconditional config ignores y. Returns the loss as a 0-d device tensor (no host sync).
    """
    device = x0.device
    t = torch.randint(0, cfg.timesteps, (x0.shape[0],), device=device, generator=state.gen)
    noise = torch.randn(x0.shape, device=device, generator=state.gen)
    labels = _dropped_labels(cfg, y, state.gen) if cfg.num_classes else None
    if cfg.lr_warmup_steps > 0 or cfg.lr_decay != "none":  # a CUDA graph's step needs a constant lr
        for group in state.optimizer.param_groups:
            group["lr"] = lr_at(cfg, state.step + 1, state.total_steps)
    loss = step_fn(x0, t, noise, weights, labels)
    state.step += 1
    ema_update(state.ema, state.model, state.step, cfg.ema_decay)
    return loss


def _dropped_labels(cfg: Config, y, gen: torch.Generator) -> torch.Tensor:
    """The labels a conditional step trains on: y with a share cfg.label_dropout replaced by the null label."""
    if y is None:
        raise ValueError(f"the '{cfg.profile}' profile is conditional (num_classes={cfg.num_classes}): each batch "
                         "needs its labels, as (x0, y, weights) from `epoch_batches`")
    u = torch.rand(y.shape, device=y.device, generator=gen)
    return guidance_module().drop_labels(y, cfg.label_dropout, cfg.num_classes, u=u)


def first_non_finite(losses: torch.Tensor, start: int, end: int) -> tuple[int, float] | None:
    """(index, value) of the first NaN or infinite loss in losses[start:end], else None (one host sync)."""
    bad = (~torch.isfinite(losses[start:end])).nonzero()
    if len(bad) == 0:
        return None
    i = start + int(bad[0])
    return i, float(losses[i])


def _non_finite_error(state: TrainState, cfg: Config, i: int, j: int, value: float, run_dir) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"loss became {value} at step {state.step - (i - j)} (epoch {state.epoch + 1}, batch {j + 1}). "
        f"Training stopped; the last good checkpoint in {run_dir and checkpoint_dir(run_dir)} is kept. "
        f"Try a lower learning rate (lr={cfg.lr}) or turn bf16 autocast off "
        f"(amp_bf16={cfg.amp_bf16}); check the input data is in [-1, 1]."
    )


def train_epoch(state: TrainState, cfg: Config, step_fn, batches, n_batches: int, progress: bool = True,
                on_step=None, on_log=None, run_dir=None) -> torch.Tensor:
    """Train on `batches` ((x0, y, weights) triples, n_batches of them): epoch number state.epoch, which the
    caller advances. Returns the losses (n_batches,) on the training device.

    Every cfg.log_every steps and at the end: checks the losses for NaN/inf (NonFiniteLossError naming the
    step), appends (step, mean loss since the last entry) to state.loss_log and calls
    on_log(state.loss_log, state.history). on_step(state) runs after every step.
    """
    state.model.train()
    losses = torch.zeros(n_batches, device=next(state.model.parameters()).device)
    bar = tqdm(batches, total=n_batches, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
               disable=not progress, leave=state.epoch + 1 == cfg.epochs)
    checked = 0
    for i, (x0, y, weights) in enumerate(bar):
        losses[i] = train_step(state, cfg, step_fn, x0, weights, y)
        if on_step is not None:
            on_step(state)
        if (i + 1) % cfg.log_every == 0 or i + 1 == n_batches:
            bad = first_non_finite(losses, checked, i + 1)
            if bad is not None:
                raise _non_finite_error(state, cfg, i, *bad, run_dir)
            state.loss_log.append((state.step, float(losses[checked:i + 1].mean())))
            checked = i + 1
            bar.set_postfix(loss=f"{state.loss_log[-1][1]:.4f}")
            if on_log is not None:
                on_log(state.loss_log, state.history)
    return losses


def _open_run(state: TrainState, cfg: Config, run_dir: Path, resume: bool) -> None:
    """Create the run folder, drop writes a kill left half done, resume from it, record the config."""
    checkpoint_dir(run_dir).mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir(run_dir).glob("*.tmp"):
        stale.unlink()
    path = restore(state, cfg, run_dir) if resume else None
    if path is not None:
        print(f"hw3_utils: resumed from {path} (epoch {state.epoch}/{cfg.epochs}, step {state.step})")
    cfg.save(config_path(run_dir))


def train_model(cfg: Config, run_dir=None, device=None, resume: bool = True, progress: bool = True,
                data_root=None, callback=None, on_log=None, on_epoch=None) -> TrainResult:
    """Train the UNet on MNIST with L_simple for cfg.epochs epochs; resume from run_dir if it has checkpoints.

    A conditional config (cfg.num_classes > 0) trains the class-conditional UNet on the labels with label dropout.

    run_dir: folder for checkpoints and config.json (None: keep nothing on disk).
    callback(epoch, history): called after each epoch, e.g. to redraw a loss curve.
    on_log(loss_log, history): called every cfg.log_every steps with the step losses so far
    ([(step, loss)]) and the per-epoch means, so a plot can move during an epoch.
    on_epoch(epoch, ema): called after each epoch's checkpoint with the EMA model, e.g. to draw a few
    samples (pipeline.preview_samples); it must leave the model's weights alone.
    Raises NonFiniteLossError (keeping the last good checkpoint) if the loss becomes NaN/inf.
    """
    device = pick_device(device)
    graphs = uses_cuda_graphs(cfg, device)
    state = new_state(cfg, device, graphs)
    ddpm = DDPM.from_config(cfg).to(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        _open_run(state, cfg, run_dir, resume)
    if state.epoch >= cfg.epochs:  # already trained: nothing to load
        return TrainResult(state.model.eval(), state.ema.eval(), ddpm, cfg, state.history, run_dir, state.step,
                           0.0, state.loss_log, state.seconds)
    dataset, data, labels = training_data(cfg, device, data_root, uses_tensor_data(cfg))
    n_batches = steps_per_epoch(len(dataset), cfg)
    state.total_steps = cfg.epochs * n_batches
    step_fn = TrainStep(state.model, ddpm, state.optimizer, graphs=graphs, amp_bf16=cfg.amp_bf16)
    t0, before = time.perf_counter(), state.seconds
    while state.epoch < cfg.epochs:
        batches = epoch_batches(cfg, state.epoch, dataset, data, device, labels)
        losses = train_epoch(state, cfg, step_fn, batches, n_batches, progress, on_log=on_log, run_dir=run_dir)
        state.history.append(float(losses.mean()))
        state.epoch += 1
        state.seconds = before + time.perf_counter() - t0
        if run_dir is not None:
            save_checkpoint(state, cfg, run_dir)
        if callback is not None:
            callback(state.epoch, state.history)
        if on_epoch is not None:
            on_epoch(state.epoch, state.ema)
    return TrainResult(state.model.eval(), state.ema.eval(), ddpm, cfg, state.history, run_dir, state.step,
                       time.perf_counter() - t0, state.loss_log, state.seconds)
