"""Training-step speed: the report's loop as written vs the kit's default path, same model and batch.

  (a) report loop: torch DataLoader over load_mnist (shuffle, num_workers=4 capped by the cores,
      pin_memory on CUDA), images.to(device), eager fp32, torch.optim.Adam defaults (not fused),
      DDPM.loss; no EMA.
  (b) kit default: what hw3_utils.train does with tensor_data and cuda_graphs (default on CUDA): the (sub)set held on
      the device (load_tensor), fixed-shape padded batches from epoch_permutation, TrainStep
      (CUDA graph on CUDA), fused Adam (`make_optimizer`; capturable on CUDA), EMA update after every step.
  (c) as (b) with bf16 autocast (--bf16; default on CUDA only).
  (d)/(e) (b)/(c) with channels_last weights and batches and cudnn.benchmark on (--extras; default
      on CUDA only): candidate speed-ups, not what train does.
  (b') hw3_utils.train itself for one epoch (--train-epoch; default on): wall time per step,
      including TrainStep's warm-up steps and the graph capture, as a check on (b).

Each path: --warmup steps, then --steps steps in --repeats chunks, each chunk timed from an idle
device with CUDA events; ms/step is the median over chunks. Projected time = ms/step x
steps/epoch x cfg.epochs (469 x 50 for the full profile). A benchmark: prints, asserts nothing.

Its record: one row per path, named by its label; config holds the sizes and any path that failed.

  python -m bench gpu.train_speed                                  # GPU, full profile
  python -m bench gpu.train_speed --device cpu --steps 4 --warmup 1 --set model_channels=8 train_subset=256 \\
      num_workers=0
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import math
import time

import torch
from torch.utils.data import DataLoader

from bench import _common as C
from bench.record import write_record
from hw3_utils import DDPM, TrainStep, build_model, load_mnist, load_tensor, subset, train_model
from hw3_utils.data import epoch_permutation, worker_count
from hw3_utils.train import ema_update, first_non_finite, make_optimizer


def endless(loader):
    """Batches forever: a new pass (and, as in the report's loop, new workers) per epoch."""
    while True:
        yield from loader


def report_loop(cfg, dataset, device):
    """(a) One step of the report's loop per call."""
    model = build_model(cfg, device)
    ddpm = DDPM.from_config(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # default betas (0.9, 0.999), not fused
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True,
                        num_workers=worker_count(cfg.num_workers), pin_memory=device.type == "cuda")
    batches = endless(loader)
    model.train()
    last = {}

    def step():
        images, _ = next(batches)
        images = images.to(device)
        t = torch.randint(0, cfg.timesteps, (images.shape[0],), device=device)
        loss = ddpm.loss(model, images, t=t)  # noise drawn inside; F.mse_loss(pred, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last["loss"] = loss.detach()

    # ends the workers and the pin-memory thread: CUDA calls from another thread would break a later graph capture
    step.close = batches.close
    return step, last, worker_count(cfg.num_workers)


def kit_path(cfg, dataset, device, amp_bf16: bool, channels_last: bool = False):
    """(b)/(c) The per-step work of hw3_utils.train's fast branch, built from the same pieces.

    channels_last (rows d/e, not what train does): weights and batches in NHWC memory format.
    """
    cuda = device.type == "cuda"
    model = build_model(cfg, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).requires_grad_(False)
    ddpm = DDPM.from_config(cfg).to(device)
    optimizer = make_optimizer(model, cfg, graphs=cuda)
    step_fn = TrainStep(model, ddpm, optimizer, graphs=cuda, amp_bf16=amp_bf16)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    data = load_tensor(dataset, device)
    n, B = len(dataset), cfg.batch_size
    steps_per_epoch = math.ceil(n / B)
    state = {"i": steps_per_epoch, "epoch": -1, "step": 0, "checked": 0}
    model.train()
    last = {}

    def step():
        if state["i"] == steps_per_epoch:  # new epoch: new order, new loss buffer
            state.update(i=0, epoch=state["epoch"] + 1, checked=0)
            state["order"] = epoch_permutation(n, cfg.seed, state["epoch"]).to(device)
            state["losses"] = torch.zeros(steps_per_epoch, device=device)
        i = state["i"]
        idx = state["order"][i * B:(i + 1) * B]
        real = idx.shape[0]
        if real < B:
            idx = torch.cat([idx, idx[:1].expand(B - real)])
        x0 = data[idx]
        if channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        weights = torch.zeros(B, device=device)
        weights[:real] = 1.0 / real
        t = torch.randint(0, cfg.timesteps, (B,), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        loss = step_fn(x0, t, noise, weights)
        state["losses"][i] = loss
        state["step"] += 1
        ema_update(ema, model, state["step"], cfg.ema_decay)
        if (i + 1) % cfg.log_every == 0 or i + 1 == steps_per_epoch:  # train's periodic host sync
            first_non_finite(state["losses"], state["checked"], i + 1)
            state["checked"] = i + 1
        state["i"] = i + 1
        last["loss"] = loss

    return step, last, step_fn


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_config_args(p)
    p.add_argument("--steps", type=int, default=200, help="timed steps per path (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20; at least 4 on CUDA)")
    p.add_argument("--repeats", type=int, default=5, help="chunks the timed steps are split into (default 5)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="also time (c), the kit path with bf16 autocast (default: on CUDA only)")
    p.add_argument("--extras", action=argparse.BooleanOptionalAction, default=None,
                   help="also time (d)/(e): (b)/(c) with channels_last + cudnn.benchmark (default: on CUDA only)")
    p.add_argument("--train-epoch", action=argparse.BooleanOptionalAction, default=True,
                   help="also time hw3_utils.train for one epoch (default on)")
    args = p.parse_args(argv)
    cfg = C.config_from_args(args)
    device = C.device_from_args(args)
    bf16 = args.bf16 if args.bf16 is not None else device.type == "cuda"
    extras = args.extras if args.extras is not None else device.type == "cuda"
    warmup = max(args.warmup, 4) if device.type == "cuda" else args.warmup  # TrainStep captures at call 4

    dataset = subset(load_mnist(train=True, in_channels=cfg.in_channels), cfg.train_subset)
    steps_per_epoch = math.ceil(len(dataset) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    env = C.environment(device)
    print(f"train_speed on {env['device']} (torch {env['torch']}), profile {cfg.profile}, "
          f"batch {cfg.batch_size}, {len(dataset)} images = {steps_per_epoch} steps/epoch x {cfg.epochs} epochs"
          f" = {total_steps} steps; {warmup} warm-up + {args.steps} timed steps per path")

    results, failed = {}, {}

    def measure(key, label, step, last, step_fn=None):
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        C.sync(device)
        warm_s = time.perf_counter() - t0
        ms = C.time_chunks(step, args.steps, args.repeats, device)
        row = {"label": label, **C.summary(ms), "warmup_s": warm_s,
               "projected_s": C.summary(ms)["ms_median"] * total_steps / 1e3,
               "final_loss": float(last["loss"])}
        if step_fn is not None:
            row["cuda_graph_captured"] = step_fn.graph is not None
        results[key] = row
        print(f"  {label}: {row['ms_median']:.3f} ms/step (chunks {row['ms_min']:.3f}-{row['ms_max']:.3f}), "
              f"loss {row['final_loss']:.4f}")
        return row

    step, last, workers = report_loop(cfg, dataset, device)
    measure("report", f"(a) report loop: DataLoader({workers} workers), eager fp32, Adam", step, last)
    step.close()
    del step
    gc.collect()
    graphs = "CUDA graph" if device.type == "cuda" else "eager (no CUDA)"
    step, last, step_fn = kit_path(cfg, dataset, device, amp_bf16=False)
    measure("kit", f"(b) kit default: data on device, TrainStep {graphs}, fp32", step, last, step_fn)
    if bf16:
        step, last, step_fn = kit_path(cfg, dataset, device, amp_bf16=True)
        measure("kit_bf16", f"(c) kit + bf16 autocast, TrainStep {graphs}", step, last, step_fn)
    if extras:  # candidate speed-ups, not the kit's behaviour: measured so the next change can be chosen
        torch.backends.cudnn.benchmark = True
        for key, amp in [("kit_cl", False), ("kit_cl_bf16", True)][: 2 if bf16 else 1]:
            label = f"({'e' if amp else 'd'}) kit{' + bf16' if amp else ''} + channels_last + cudnn.benchmark"
            try:
                step, last, step_fn = kit_path(cfg, dataset, device, amp_bf16=amp, channels_last=True)
                measure(key, label, step, last, step_fn)
            except Exception as err:  # an experiment: report it and keep the rows that matter
                failed[key] = f"{label}: {type(err).__name__}: {str(err)[:300]}"
                print(f"  FAILED {failed[key]}")
        torch.backends.cudnn.benchmark = False
    del step, step_fn

    if args.train_epoch:
        one = dataclasses.replace(cfg, epochs=1)
        t0 = time.perf_counter()
        result = train_model(one, run_dir=None, device=device, progress=False)
        wall = time.perf_counter() - t0
        ms = result.seconds * 1e3 / steps_per_epoch
        results["train_epoch"] = {
            "label": "(b') hw3_utils.train, 1 epoch incl. warm-up + capture",
            "ms_median": ms, "ms_min": ms, "ms_max": ms, "chunks": 1, "epoch_s": result.seconds,
            "wall_s_incl_data_load": wall, "projected_s": ms * total_steps / 1e3,
            "final_loss": result.history[-1],
        }

    base = results["report"]["ms_median"]
    rows = []
    for r in results.values():
        r["speedup_vs_report"] = base / r["ms_median"]
        rows.append([r["label"], f"{r['ms_median']:.3f}", f"{r['ms_min']:.3f}-{r['ms_max']:.3f}",
                     C.fmt_s(r["projected_s"]), f"{r['speedup_vs_report']:.2f}x"])
    print()
    print(f"device: {env['device']}")
    print(C.table(rows, ["path", "ms/step (median)", "chunk range", f"projected {cfg.epochs} epochs", "vs (a)"]))
    print(f"projected = ms/step x {steps_per_epoch} steps/epoch x {cfg.epochs} epochs "
          "(steady state; excludes data loading, per-epoch DataLoader worker start-up and checkpoints)")
    print("targets (issue 5, one H100/H200, full profile): 50 epochs <= 90 s and >= 2.5x (a)")
    for key, why in failed.items():
        print(f"FAILED {key}: {why}")
    if args.json:
        config = {"profile": cfg.profile, "set": C.parse_sets(args.set), "batch_size": cfg.batch_size,
                  "steps_per_epoch": steps_per_epoch, "epochs": cfg.epochs, "warmup_steps": warmup,
                  "timed_steps": args.steps, "repeats": args.repeats, "failed": failed}
        rows = [{"name": r["label"], **{k: v for k, v in r.items() if k != "label"}} for r in results.values()]
        write_record("gpu.train_speed", rows, config, argv, path=args.json, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
