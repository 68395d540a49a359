"""Correctness of the fast path on this device, in a tiny config (seconds): run it before any timing.

1. TrainStep with CUDA graphs vs the same steps run eagerly (same weights, inputs, fused capturable
   Adam), including padded batches: per-step losses and final weights.
2. Fused capturable Adam (the fast path's) vs torch's default Adam (the plain path's).
3. GraphedModel vs the eager model on fresh inputs after capture, a second batch shape, and bf16.
4. hw3_utils.train with tensor_data and cuda_graphs on vs off (GPU-resident data + TrainStep vs DataLoader +
   eager loop) on a subset that divides into whole batches: per-epoch losses and final weights.
5. (CUDA) train() started on the CPU and resumed on CUDA with the fast path, and the reverse.
On the CPU the graph parts run eagerly, so it checks the padding and train() paths only.
Prints one row per check (relative error ||a - b|| / ||b|| and its tolerance); exit status 1 if any fails.

Its record: one row per check, named with its tolerance, with the value and ok.

  python -m bench gpu.check [--device cpu] [--set model_channels=16]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile

import torch

from bench import _common as C
from bench.record import write_record
from hw3_utils import DDPM, GraphedModel, TrainStep, build_model, train_model


def rel(a, b) -> float:
    a, b = torch.as_tensor(a).double().flatten(), torch.as_tensor(b).double().flatten()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().double().cpu() for p in model.parameters()])


def batches(cfg, device, count, B, gen):
    """Fresh random batches; every third one has only B // 3 real images (the rest is padding)."""
    out = []
    for k in range(count):
        real = B if k % 3 else max(1, B // 3)
        x0 = torch.rand((B, *cfg.image_shape), device=device, generator=gen) * 2 - 1
        t = torch.randint(0, cfg.timesteps, (B,), device=device, generator=gen)
        noise = torch.randn((B, *cfg.image_shape), device=device, generator=gen)
        w = torch.zeros(B, device=device)
        w[:real] = 1.0 / real
        out.append((x0, t, noise, w))
    return out


def check_trainstep(cfg, device, rows):
    cuda = device.type == "cuda"
    ddpm = DDPM.from_config(cfg).to(device)
    data = batches(cfg, device, 10, 32, torch.Generator(device).manual_seed(1))
    runs = {}
    for name, graphs, fused in [("graph", True, True), ("eager", False, True), ("plain-adam", False, False)]:
        model = build_model(cfg, device)
        kw = dict(fused=True, capturable=True) if (fused and cuda) else {}
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, **kw)
        step = TrainStep(model, ddpm, opt, graphs=graphs)
        losses = torch.stack([step(*b) for b in data]).cpu()
        runs[name] = (losses, params(model), step.graph is not None)
    if cuda:
        rows.append(("TrainStep graph captured", float(runs["graph"][2]), "== 1", runs["graph"][2]))
    for other, tol in [("graph", 1e-4), ("plain-adam", 1e-4)]:
        e = rel(runs[other][0], runs["eager"][0])
        rows.append((f"losses {other} vs eager TrainStep (10 steps, padded)", e, f"< {tol}", e < tol))
        e = rel(runs[other][1], runs["eager"][1])
        rows.append((f"weights {other} vs eager after 10 steps", e, f"< {tol}", e < tol))


def check_graphed_model(cfg, device, rows):
    model = build_model(cfg, device).eval()
    gen = torch.Generator(device).manual_seed(2)
    for bf16, tol in [(False, 1e-4), (True, 3e-2)]:
        net = GraphedModel(model, amp_bf16=bf16)
        worst = 0.0
        for B in (16, 16, 16, 16, 8):  # capture at the first call; the 8-batch runs eagerly
            x = torch.randn((B, *cfg.image_shape), device=device, generator=gen)
            t = torch.randint(0, cfg.timesteps, (B,), device=device, generator=gen)
            with torch.no_grad():
                worst = max(worst, rel(net(x, t), model(x, t)))
        name = f"GraphedModel{' bf16' if bf16 else ''} vs eager fp32 (5 fresh inputs)"
        rows.append((name, worst, f"< {tol}", worst < tol))


def check_train(cfg, device, rows):
    base = dataclasses.replace(cfg, train_subset=4 * 64, batch_size=64, epochs=2, num_workers=0)
    res = {f: train_model(dataclasses.replace(base, tensor_data=f, cuda_graphs=f), None, device=device, progress=False)
           for f in (True, False)}
    e = rel(res[True].history, res[False].history)
    rows.append(("train(): epoch losses fast vs plain (2 epochs x 4 steps)", e, "< 1e-4", e < 1e-4))
    e = rel(params(res[True].model), params(res[False].model))
    rows.append(("train(): final weights fast vs plain", e, "< 1e-4", e < 1e-4))
    e = rel(params(res[True].ema), params(res[False].ema))
    rows.append(("train(): final EMA fast vs plain", e, "< 1e-4", e < 1e-4))


def check_resume_across_devices(cfg, device, rows):
    """A run started on the CPU (plain Adam) and resumed on CUDA (fast path), and the reverse.

    Optimizer.load_state_dict takes the param-group flags (fused, capturable) from the checkpoint,
    so a resumed fast run may hold a non-capturable Adam when TrainStep captures its graph.
    """
    if device.type != "cuda":
        return
    base = dataclasses.replace(cfg, train_subset=64, batch_size=32, num_workers=0)
    for first, second in [("cpu", device), (device, "cpu")]:
        with tempfile.TemporaryDirectory() as run:
            train_model(dataclasses.replace(base, epochs=1), run, device=first, progress=False)
            try:
                res = train_model(dataclasses.replace(base, epochs=3), run, device=second, progress=False)
                ok, value, note = len(res.history) == 3, float(res.history[-1]), "3 epochs"
            except Exception as err:
                ok, value, note = False, float("nan"), f"{type(err).__name__}: {str(err)[:120]}"
        rows.append((f"train() resumed {first} -> {second}: {note}", value, "runs", ok))


CHECKS = {"trainstep": check_trainstep, "graphed_model": check_graphed_model, "train": check_train,
          "resume": check_resume_across_devices}


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_config_args(p)
    p.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS), help="default: all")
    args = p.parse_args(argv)
    if not args.set:
        args.set = ["model_channels=16"]
    cfg = C.config_from_args(args)
    device = C.device_from_args(args)
    print(f"gpu.check on {C.device_name(device)} (torch {torch.__version__}), model_channels {cfg.model_channels}")
    rows = []
    for name in args.checks:
        try:
            CHECKS[name](copy.deepcopy(cfg), device, rows)
        except Exception as err:  # report and go on: one broken path should not hide the others
            rows.append((f"{name} raised {type(err).__name__}: {str(err)[:200]}", float("nan"), "", False))
    print(C.table([[n, f"{v:.2e}", tol, "PASS" if ok else "FAIL"] for n, v, tol, ok in rows],
                  ["check", "value", "tolerance", "result"]))
    if args.json:
        write_record("gpu.check", [{"name": f"{n} ({tol})" if tol else n, "value": v, "ok": bool(ok)}
                                   for n, v, tol, ok in rows],
                     {"profile": cfg.profile, "set": C.parse_sets(args.set), "checks": args.checks}, argv,
                     path=args.json, device=device)
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
