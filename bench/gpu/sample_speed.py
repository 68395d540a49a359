"""Sampling speed: 1000-step ancestral (DDPM) and DDIM throughput for N images (default 10,000).

Modes: `eager` (the model called directly, fp32: the report's sampler), `graph` (GraphedModel: the
kit's default on CUDA, fp32), `graph-bf16` (GraphedModel under bf16 autocast), `eager-bf16`, and
`graph-cl`, `graph-bf16-cl`: weights in channels_last with cudnn.benchmark on (candidate speed-ups,
not what the kit does).
The model has the profile's shapes and freshly initialised weights (speed does not depend on
them), or the EMA weights of a run folder with --run.

  ancestral: for each mode and each --batch-sizes B, --warmup steps then --steps timed DDPM steps
      (ddpm.p_sample, exactly the step `sampling.sample` repeats) in --repeats chunks; ms/step is the
      median. PROJECTED time for N images = ms/step x T x ceil(N / B) (not measured end to end;
      gpu.evaluate's sample wall times are the end-to-end numbers).
  DDIM: for each mode, every --ddim-measure step count is MEASURED end to end for N images at
      --ddim-batch (`sampling.sample` as make_sampler calls it, with a fresh GraphedModel per run, so
      the graph capture is included; batches and seeds as generate_samples, no PNG writing);
      the other --ddim-steps counts are projected from that run's time per step.
A benchmark: prints, asserts nothing.

Its record: one row per (mode, batch) named "ancestral <mode> B=<batch>", then one per (mode, steps) named
"DDIM-<steps> <mode>" (measured: true where timed end to end); config holds the sizes and any mode that failed.

  python -m bench gpu.sample_speed                                     # GPU: 10,000 images
  python -m bench gpu.sample_speed --device cpu --num-images 16 --batch-sizes 8 --steps 2 --warmup 1 \\
      --ddim-steps 5 10 --ddim-measure 10 --set model_channels=8
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from bench import _common as C
from bench.record import write_record
from hw3_utils import DDPM, GraphedModel, build_model, load_model, sample
from hw3_utils.config import stream_seed
from hw3_utils.cuda_graphs import autocast

MODES = {  # name: (graphs, bf16, channels_last + cudnn.benchmark)
    "eager": (False, False, False),
    "graph": (True, False, False),
    "graph-bf16": (True, True, False),
    "eager-bf16": (False, True, False),
    "graph-cl": (True, False, True),
    "graph-bf16-cl": (True, True, True),
}


class Eager(torch.nn.Module):
    """The plain model call, optionally under bf16 autocast (GraphedModel's call without the graph)."""

    def __init__(self, model, amp_bf16: bool):
        super().__init__()
        self.model, self.amp = model, amp_bf16

    @torch.no_grad()
    def forward(self, x, t):
        with autocast(x.device, self.amp):
            return self.model(x, t).float()


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    C.add_config_args(p)
    p.add_argument("--run", default=None, help="load EMA weights from this run folder (default: fresh weights)")
    p.add_argument("--num-images", type=int, default=None, help="images (default cfg.num_samples)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="ancestral batch sizes (default cfg.sample_batch_size)")
    p.add_argument("--modes", nargs="+", default=None, choices=sorted(MODES),
                   help="default: eager graph graph-bf16 graph-bf16-cl on CUDA, eager on CPU")
    p.add_argument("--steps", type=int, default=50, help="timed ancestral steps per (mode, batch) (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed ancestral steps first (default 5)")
    p.add_argument("--repeats", type=int, default=5, help="chunks the timed steps are split into (default 5)")
    p.add_argument("--ddim-steps", type=int, nargs="*", default=[50, 100], help="DDIM step counts (default 50 100)")
    p.add_argument("--ddim-measure", type=int, nargs="*", default=[100],
                   help="DDIM step counts measured end to end (default 100); others are projected")
    p.add_argument("--ddim-batch", type=int, default=None, help="DDIM batch size (default cfg.sample_batch_size)")
    args = p.parse_args(argv)
    cfg = C.config_from_args(args)
    device = C.device_from_args(args)
    cuda = device.type == "cuda"
    modes = args.modes or (["eager", "graph", "graph-bf16", "graph-bf16-cl"] if cuda else ["eager"])
    n = args.num_images or cfg.num_samples
    batch_sizes = args.batch_sizes or [cfg.sample_batch_size]
    ddim_batch = args.ddim_batch or cfg.sample_batch_size
    measure = [k for k in args.ddim_measure if k in args.ddim_steps] or args.ddim_steps[-1:]
    T = cfg.timesteps

    model = (load_model(args.run, "ema", device, cfg=cfg) if args.run else build_model(cfg, device)).eval()
    ddpm = DDPM.from_config(cfg).to(device)
    env = C.environment(device)
    print(f"sample_speed on {env['device']} (torch {env['torch']}), profile {cfg.profile}, {n} images, "
          f"T={T}, modes {modes}, ancestral batch sizes {batch_sizes}, DDIM batch {ddim_batch}")

    ancestral, ddim, failed = [], [], {}

    def run_mode(mode):
        graphs, bf16, cl = MODES[mode]
        if graphs and not cuda:
            print(f"  note: {mode} on {device.type} runs eagerly (CUDA graphs need CUDA)")
        net_model = copy.deepcopy(model).to(memory_format=torch.channels_last) if cl else model
        torch.backends.cudnn.benchmark = cl
        make_net = lambda: GraphedModel(net_model, amp_bf16=bf16) if graphs else Eager(net_model, bf16)
        for B in batch_sizes:
            net = make_net()
            state = {"x": torch.randn((B, *cfg.image_shape), device=device), "t": T - 1}

            def step(net=net, state=state):
                state["x"] = ddpm.p_sample(net, state["x"], state["t"])
                state["t"] = state["t"] - 1 if state["t"] > 0 else T - 1

            t0 = time.perf_counter()
            for _ in range(args.warmup):
                step()
            C.sync(device)
            warm = time.perf_counter() - t0
            s = C.summary(C.time_chunks(step, args.steps, args.repeats, device))
            batches = math.ceil(n / B)
            row = {"mode": mode, "batch_size": B, **s, "warmup_s_incl_capture": warm,
                   "projected_s": s["ms_median"] * T * batches / 1e3, "batches": batches,
                   "images_per_s": B / (s["ms_median"] * T / 1e3),
                   "cuda_graph_captured": getattr(net, "graph", None) is not None}
            ancestral.append(row)
            print(f"  ancestral {mode} B={B}: {s['ms_median']:.3f} ms/step -> projected "
                  f"{C.fmt_s(row['projected_s'])} for {n} x {T} steps")
            del net, state

        per_step = None
        for k in measure:
            C.sync(device)
            t0 = time.perf_counter()
            net = make_net()  # fresh, as make_sampler builds one: the capture is part of the time
            for b in range(math.ceil(n / ddim_batch)):  # batches and seeds as generate_samples
                gen = torch.Generator(device).manual_seed(stream_seed(cfg.seed, b))
                sample(net, ddpm, cfg, n=min(ddim_batch, n - b * ddim_batch), method="ddim", steps=k, eta=0.0,
                       clip=False, generator=gen, progress=False, device=device)
            C.sync(device)
            sec = time.perf_counter() - t0
            per_step = sec / k
            ddim.append({"mode": mode, "steps": k, "batch_size": ddim_batch, "seconds": sec, "measured": True,
                         "images_per_s": n / sec})
            print(f"  DDIM-{k} {mode} B={ddim_batch}: {sec:.2f} s measured for {n} images")
        for k in args.ddim_steps:
            if k not in measure:
                ddim.append({"mode": mode, "steps": k, "batch_size": ddim_batch, "seconds": per_step * k,
                             "measured": False, "images_per_s": n / (per_step * k)})

    for mode in modes:
        try:
            run_mode(mode)
        except Exception as err:  # report it and keep the other modes' rows
            failed[mode] = f"{type(err).__name__}: {str(err)[:300]}"
            print(f"  FAILED {mode}: {failed[mode]}")
        finally:
            torch.backends.cudnn.benchmark = False

    print()
    print(f"device: {env['device']}")
    print(f"Ancestral DDPM, {T} steps, {n} images: PROJECTED from {args.steps} timed steps per row "
          f"(ms/step x {T} x batches)")
    print(C.table([[r["mode"], r["batch_size"], f"{r['ms_median']:.3f}", f"{r['ms_min']:.3f}-{r['ms_max']:.3f}",
                    f"{r['images_per_s']:.4g}", C.fmt_s(r["projected_s"]) + " (projected)"] for r in ancestral],
                  ["mode", "batch", "ms/step", "chunk range", "images/s", f"{n} images x {T} steps"]))
    if n % max(batch_sizes) and any("graph" in m for m in modes):
        print(f"  note: {n} is not a multiple of every batch size; a graphed sampler runs its last, smaller "
              "batch eagerly, which the projection ignores")
    print(f"DDIM (eta 0), {n} images at batch {ddim_batch}:")
    print(C.table([[r["mode"], r["steps"], f"{r['seconds']:.2f} s", f"{r['images_per_s']:.4g}",
                    "measured end to end" if r["measured"] else "projected from the measured run"] for r in ddim],
                  ["mode", "steps", f"{n} images", "images/s", "how"]))
    print("targets (issue 5, one H100/H200): 10,000 x 1000 ancestral steps <= 45 s; DDIM 100 steps < 5 s")
    for key, why in failed.items():
        print(f"FAILED {key}: {why}")
    if args.json:
        config = {"profile": cfg.profile, "set": C.parse_sets(args.set), "weights": args.run or "fresh",
                  "num_images": n, "timesteps": T, "timed_steps": args.steps, "warmup_steps": args.warmup,
                  "repeats": args.repeats, "failed": failed}
        rows = [*({"name": f"ancestral {r['mode']} B={r['batch_size']}", **r} for r in ancestral),
                *({"name": f"DDIM-{r['steps']} {r['mode']}", **r} for r in ddim)]
        write_record("gpu.sample_speed", [{k: v for k, v in r.items() if k != "mode"} for r in rows], config, argv,
                     path=args.json, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
