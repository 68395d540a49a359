"""Where a CPU training step goes, measured before anything is tuned: the `cpu` profile's step, several ways.

Each row is one optimiser step of the profile's UNet (DDPM.loss, backward, Adam) on a batch of
cfg.batch_size images, after --warmup steps, timed over --steps steps (median of --repeats chunks):

  dataloader      the report's data path: torchvision's PIL transforms in DataLoader workers
                  (num_workers capped by the cores), NCHW
  tensor          the whole set held as one tensor, batches indexed from it (`load_tensor`), NCHW
  channels_last   tensor data, weights and activations in NHWC
  1 thread        channels_last with torch.set_num_threads(1)
  bf16 autocast   channels_last under CPU bf16 autocast (slow without AVX512-BF16 / AMX)
  torch.compile   channels_last, the model compiled (inductor); its compile time is printed apart

then the kit's own step (`TrainStep`, the EMA update; tensor data), four ways in alternating chunks within one
process, so that the machine's changing pace falls on all alike: NCHW with torch's Adam as a CPU runs it by
default (one parameter at a time: `foreach` is a CUDA default only), with `foreach=True`, with `fused=True`
(`train.make_optimizer`), and channels_last with fused Adam, the cpu profile (`--no-kit-step` skips them,
`--only-kit-step` runs them alone; `--kit-compile` adds the profile's step with the model under torch.compile,
its compile time printed apart); and the sampling side: one model call on cfg.sample_batch_size images,
NCHW and channels_last alternating.
A benchmark: prints a table (and its record, --json), asserts nothing. Rows: ms_per_step and s_per_epoch
(60,000 images); the kit's step adds vs_first (its time over the first way's) and opt_step_ms (`opt.step()` alone),
a compiled row compile_s; a sampling row ms_per_call, s_for_samples (cfg.num_samples at the profile's steps)
and vs_nchw.

  python -m bench cpu_speed                      # the cpu profile on this machine
  python -m bench cpu_speed --steps 3 --warmup 1 --repeats 1 --no-compile   # a quick look
  python -m bench cpu_speed --only-kit-step --steps 20 --repeats 10 --warmup 5   # the kit's step, 4 ways
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

from bench import _common as C
from bench.record import write_record
from hw3_utils import DDPM, build_model, load_mnist, load_tensor, make_loader, subset
from hw3_utils.cuda_graphs import TrainStep
from hw3_utils.data import epoch_permutation
from hw3_utils.train import ema_update, make_optimizer


def _model(cfg, channels_last: bool):
    return build_model(dataclasses.replace(cfg, channels_last=channels_last), "cpu").train()


def time_steps(cfg, batches, channels_last=True, bf16=False, compile_model=False, warmup=3, steps=10,
               repeats=3) -> tuple[float, float]:
    """(median ms per step, compile seconds) of `steps` optimiser steps drawn from the iterator `batches`."""
    model = _model(cfg, channels_last)
    ddpm = DDPM.from_config(cfg)
    opt = make_optimizer(model, cfg)  # the kit's (fused); the Adam rows below compare it with the others
    net = model
    compile_s = 0.0
    if compile_model:
        net = torch.compile(model)
    g = torch.Generator().manual_seed(0)

    def step():
        x0 = next(batches)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = ddpm.loss(net, x0, generator=g)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()  # the first call compiles
    if compile_model:
        compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    chunks = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        chunks.append((time.perf_counter() - t0) / steps * 1000)
    return statistics.median(chunks), compile_s


# the kit's own step, several ways: name -> (channels_last, Adam keyword arguments, or None for the kit's own
# `make_optimizer`); the last is the cpu profile's
KIT_STEPS = {
    "NCHW, Adam default (per parameter)": (False, {}),
    "NCHW, Adam foreach": (False, dict(foreach=True)),
    "NCHW, Adam fused": (False, dict(fused=True)),
    "channels_last, Adam fused (the cpu profile)": (True, None),
}
# with --kit-compile, a fifth way: the cpu profile's step with the model under torch.compile (inductor)
KIT_COMPILED = "channels_last, Adam fused, torch.compile (not the kit's)"


def time_kit_steps(cfg, data, warmup=3, steps=10, repeats=3,
                   compiled=False) -> tuple[dict[str, tuple[float, float]], float | None]:
    """({way: (median ms of the kit's whole step, median ms of the optimiser step alone)}, compile seconds).

    The whole step: TrainStep + EMA update, each way on its own copy of one model, chunks of `steps` steps
    alternating between the ways `repeats` times, so that the machine's changing pace falls on all alike.
    The optimiser alone: `opt.step()` on fixed gradients, 20 calls a chunk, 3 x `repeats` chunks alternating
    (less noisy than the whole step, whose difference it explains). The ways are KIT_STEPS and, with `compiled`,
    KIT_COMPILED, whose compile time (its first call, before the warm-up) is the second value (else None)."""
    g = torch.Generator().manual_seed(0)
    ddpm = DDPM.from_config(cfg)
    ways = {**KIT_STEPS, **({KIT_COMPILED: (True, None)} if compiled else {})}
    runs = {}
    for name, (channels_last, kw) in ways.items():
        model = _model(cfg, channels_last)
        if kw is None:
            opt = make_optimizer(model, cfg)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, **kw)
        net = torch.compile(model) if name == KIT_COMPILED else model
        runs[name] = (model, copy.deepcopy(model).requires_grad_(False), TrainStep(net, ddpm, opt), opt)
    batches = tensor_batches(data, cfg)
    counter = {name: 0 for name in ways}

    def chunk(name, n):
        model, ema, step, _ = runs[name]
        for _ in range(n):
            t = torch.randint(0, cfg.timesteps, (cfg.batch_size,), generator=g)
            x0 = next(batches)
            step(x0, t, torch.randn(x0.shape, generator=g), None)
            counter[name] += 1
            ema_update(ema, model, counter[name], cfg.ema_decay)

    compile_s = None
    if compiled:
        t0 = time.perf_counter()
        chunk(KIT_COMPILED, 1)  # inductor compiles the forward and backward graphs here
        compile_s = time.perf_counter() - t0
    for name in ways:
        chunk(name, warmup)
    whole = {name: [] for name in ways}
    for _ in range(repeats):
        for name in ways:
            t0 = time.perf_counter()
            chunk(name, steps)
            whole[name].append((time.perf_counter() - t0) / steps * 1000)
    alone = {name: [] for name in ways}
    for _ in range(3 * repeats):
        for name in ways:
            opt = runs[name][3]
            t0 = time.perf_counter()
            for _ in range(20):
                opt.step()  # on the gradients of the last step, which TrainStep leaves in .grad
            alone[name].append((time.perf_counter() - t0) / 20 * 1000)
    return {name: (statistics.median(whole[name]), statistics.median(alone[name])) for name in ways}, compile_s


def tensor_batches(data, cfg):
    while True:
        order = epoch_permutation(len(data), cfg.seed, 0)
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            yield data[order[i:i + cfg.batch_size]]


def loader_batches(dataset, cfg):
    while True:
        for x0, _ in make_loader(cfg, dataset, 0):
            if len(x0) == cfg.batch_size:
                yield x0


def time_sampling_calls(cfg, repeats: int) -> dict[bool, float]:
    """{channels_last: median ms of one model call on cfg.sample_batch_size images}, the two layouts alternating."""
    models = {cl: _model(cfg, cl).eval() for cl in (False, True)}
    x = torch.randn(cfg.sample_batch_size, *cfg.image_shape)
    t = torch.full((cfg.sample_batch_size,), 500)
    times = {cl: [] for cl in models}
    with torch.no_grad():
        for model in models.values():
            model(x, t)
        for _ in range(repeats):
            for cl, model in models.items():
                t0 = time.perf_counter()
                model(x, t)
                times[cl].append((time.perf_counter() - t0) * 1000)
    return {cl: statistics.median(v) for cl, v in times.items()}


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    C.add_config_args(p, default_profile="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (its compile takes minutes)")
    p.add_argument("--no-kit-step", action="store_true", help="skip the kit's-step rows (layouts and Adams)")
    p.add_argument("--only-kit-step", action="store_true", help="only the kit's-step rows (and the sampling rows)")
    p.add_argument("--kit-compile", action="store_true",
                   help="add a fifth kit's-step way: the cpu profile's step with the model under torch.compile")
    args = p.parse_args(argv)
    cfg = C.config_from_args(args)
    rows = measure(cfg, args)
    env = C.environment(torch.device("cpu"))
    print(f"\n{env['device']}, torch {env['torch']}, profile {cfg.profile}: width {cfg.model_channels}, "
          f"{cfg.in_channels} channel(s), batch {cfg.batch_size}; {args.steps} steps x {args.repeats} repeats")
    print(C.table([printed(r) for r in rows], ["path", "ms/step", "s/epoch (60,000 images)", "note"]))
    if args.json:
        config = {"profile": cfg.profile, "set": C.parse_sets(args.set), "steps": args.steps, "warmup": args.warmup,
                  "repeats": args.repeats, "batch_size": cfg.batch_size, "sample_batch_size": cfg.sample_batch_size,
                  "num_samples": cfg.num_samples, "sample_steps": cfg.sample_steps or cfg.timesteps}
        write_record("cpu_speed", rows, config, argv, path=args.json)
    return 0


def measure(cfg, args) -> list[dict]:
    """The rows: each way of taking a training step asked for, then the sampling calls."""
    threads = torch.get_num_threads()
    dataset = subset(load_mnist(train=True, in_channels=cfg.in_channels), cfg.train_subset or 8192)
    data = load_tensor(dataset)
    kw = dict(warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    rows = []

    def row(name, ms, **extra):
        rows.append({"name": name, "ms_per_step": ms, "s_per_epoch": ms / 1000 * -(-60_000 // cfg.batch_size),
                     **extra})
        print(f"{name}: {ms:.0f} ms/step", flush=True)

    if not args.only_kit_step:
        row("dataloader (PIL workers), NCHW",
            time_steps(cfg, loader_batches(dataset, cfg), channels_last=False, **kw)[0])
        row("tensor data, NCHW", time_steps(cfg, tensor_batches(data, cfg), channels_last=False, **kw)[0])
        row("tensor data, channels_last", time_steps(cfg, tensor_batches(data, cfg), channels_last=True, **kw)[0])
        torch.set_num_threads(1)
        row("tensor data, channels_last, 1 thread", time_steps(cfg, tensor_batches(data, cfg), **kw)[0])
        torch.set_num_threads(threads)
        row("tensor data, channels_last, bf16 autocast",
            time_steps(cfg, tensor_batches(data, cfg), bf16=True, **kw)[0])
    if not args.no_kit_step:
        kit, compile_s = time_kit_steps(cfg, data, compiled=args.kit_compile, **kw)
        ref = next(iter(kit.values()))[0]
        for name, (ms, opt_ms) in kit.items():
            row(f"kit's step (TrainStep + EMA), {name}", ms, vs_first=ms / ref, opt_step_ms=opt_ms,
                **({"compile_s": compile_s} if name == KIT_COMPILED else {}))
    if not (args.no_compile or args.only_kit_step):
        ms, comp = time_steps(cfg, tensor_batches(data, cfg), compile_model=True, **kw)
        row("tensor data, channels_last, torch.compile", ms, compile_s=comp)
    steps = cfg.sample_steps or cfg.timesteps
    calls = time_sampling_calls(cfg, max(args.repeats, 3))
    for cl, ms in calls.items():
        rows.append({"name": f"sampling: one model call on {cfg.sample_batch_size} images, "
                             f"{'channels_last' if cl else 'NCHW'}", "ms_per_call": ms,
                     "s_for_samples": ms * steps / 1000 * cfg.num_samples / cfg.sample_batch_size,
                     "vs_nchw": ms / calls[False]})
        print(rows[-1], flush=True)
    return rows


def printed(r: dict) -> list[str]:
    """One row of the printed table: path, ms/step, s/epoch, a note with the rest."""
    if "ms_per_call" in r:
        return [r["name"], f"{r['ms_per_call']:.0f}", "", f"{r['s_for_samples']:.0f} s for the profile's samples "
                f"({r['vs_nchw']:.2f}x NCHW)"]
    note = [f"{r['vs_first']:.2f}x the first; opt.step() alone {r['opt_step_ms']:.1f} ms"] if "vs_first" in r else []
    note += [f"+ {r['compile_s']:.0f} s to compile"] if r.get("compile_s") is not None else []
    return [r["name"], f"{r['ms_per_step']:.0f}", f"{r['s_per_epoch']:.0f}", f"({'; '.join(note)})" if note else ""]


if __name__ == "__main__":
    raise SystemExit(main())
