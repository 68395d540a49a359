"""Which levers buy FID on a 2-core CPU? Each arm trains for the same wall-clock time, then FID-1k.

Every arm starts from the `cpu` profile, changes one lever, and trains from scratch for --budget seconds
of optimiser steps on this machine: a timed probe of a throwaway copy gives the seconds per step, and
the run takes budget / that many steps, re-estimated from the run's own recent pace at steps 100, 150 and
195 (inside the warm-up), so the lr warm-up and cosine decay end where the budget does. With --epochs
instead, each arm trains exactly that many epochs of its own batch size, as a student's run does.
Training is train.py's own parts (`new_state`, `tensor_batches`, `train_epoch`: the CLI's step through `TrainStep`,
lr schedule, EMA update and data order, the short last batch padded). Several EMA copies ride along in every run
(an EMA costs one lerp per step). Each evaluation draws --samples images with the kit's sampler
(`sampling.sample`: Algorithm 2 respaced, or DDIM) from a fixed noise seed and scores their FID against the cached
MNIST training statistics (all 60,000 images), quantised exactly as the kit's PNGs (`fid.tensor_stats`).

Levers, and where each comes from:
- width (`model_channels`), channel multipliers and the bottleneck width: where the FLOPs go, the
  28x28 level against the 7x7 and 3x3 ones (Ho et al. 2020, arXiv:2006.11239, app. B: the UNet;
  Nichol & Dhariwal 2021, arXiv:2102.09672, sec. 5: trading model size against training compute);
- epochs against width: at equal time a narrower UNet takes more steps (the `w8`/`w24` arms);
- batch size, learning rate and warm-up (Goyal et al. 2017, arXiv:1706.02677);
- EMA decay (Ho et al. 2020 use 0.9999 over 800k steps; Karras et al. 2024, arXiv:2312.02696,
  sec. 3: the EMA length should follow the training length): several copies per run, `@<decay>`,
  and `@raw` for the weights without EMA. train.py's EMA warm-up caps the decay at
  (1 + step) / (10 + step), which stays below 0.999 until step 8,991: in a run shorter than that,
  decays of 0.999 and above give the same weights, and only the warm-up's horizon counts;
- GroupNorm groups (Wu & He 2018, arXiv:1803.08494; the report does not give a number): with 8 groups at
  width 16, each group of 2 channels loses its mean, and most seeds' networks learn to ignore the image mean of
  x_t (`mean_err_T`); one group (`groups=1`, normalising over all channels as LayerNorm does) keeps it;
- the cosine alpha-bar schedule (Nichol & Dhariwal 2021, eq. 17; `levers.cosine_betas`);
- Min-SNR-5 loss weighting (Hang et al. 2023, arXiv:2303.09556; `levers.min_snr_weights`);
- sampler steps (respacing, Nichol & Dhariwal 2021 sec. 4) and DDIM eta (Song et al. 2021,
  arXiv:2010.02502, eq. 16): evaluations `ddpm<K>`, `ddim<K>`, `ddim<K>e<eta>`;
  the sampler's variance, sigma_t^2 = beta-tilde_t (the profile's) or beta_t (Ho et al. 2020, sec. 3.2: both
  gave similar results at T = 1000; `ddpm<K>b`);
- x0-hat clipping (Ho et al.'s released code, clip_denoised): on in every evaluation, as in the profile.

Each row also has `mean_err_T` (`DDPM.mean_error`): how far the model is from following the mean of x_t near
t = T, which is what turns a run with a good loss into samples with grey backgrounds and bright blobs.

Writes its record (--json) after every evaluation, so an interrupted run keeps what it measured, and skips
(arm, seed, evaluation) rows already in that file; a row's name is "<arm> <evaluation>". Prints one table:
each row, then the mean over seeds per arm and evaluation.

    python -m bench cpu_ablation --budget 600 --seeds 0 1 --json ablation.json
    python -m bench cpu_ablation --budget 150 --arms base cosine --evals profile ddpm50 --seeds 0
    python -m bench cpu_ablation --epochs 5 --arms base b16 --seeds 0 --evals ddpm50   # at a student's run length
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from pathlib import Path

import torch

from bench import _common as C
from bench.levers import make_ddpm, mean_error
from bench.record import check_record, write_record
from hw3_utils import fid, get_config, train
from hw3_utils.cuda_graphs import TrainStep
from hw3_utils.data import load_mnist, load_tensor, subset
from hw3_utils.diffusion import DDPM
from hw3_utils.runfolder import checkpoint_paths
from hw3_utils.sampling import sample
from hw3_utils.train import build_model, load_model, make_optimizer
from hw3_utils.unet import count_parameters
from hw3_utils.viz import png_bytes

# arm -> (config overrides on the cpu profile, extras the Config has no field for, what it tests)
ARMS: dict[str, tuple[dict, dict, str]] = {
    "base": ({}, {}, "the cpu profile as it is"),
    "g8": (dict(groups=8), {}, "GroupNorm in 8 groups (2 channels each at 28x28), the profile before groups=1"),
    "w8": (dict(model_channels=8), {}, "half width, about 2x the steps"),
    "w12": (dict(model_channels=12), {}, "width 12 (widths 12/24/48, bottleneck 96), more epochs in the same time"),
    "w24": (dict(model_channels=24), {}, "1.5x width, fewer steps"),
    "bn4": (dict(bottleneck_mult=4), {}, "bottleneck 64 instead of 128 channels"),
    "m122": (dict(channel_mult=(1, 2, 2), bottleneck_mult=4), {}, "narrower 7x7 level and bottleneck"),
    "bn16": (dict(bottleneck_mult=16), {}, "bottleneck 256 instead of 128 channels (2x the parameters)"),
    "w24-m112": (dict(model_channels=24, channel_mult=(1, 1, 2), bottleneck_mult=4), {},
                 "wider 28x28 level, flat below it"),
    "b16": (dict(batch_size=16, lr=7e-4), {}, "batch 16, lr 7e-4 (1e-3 / sqrt 2)"),
    "b32": (dict(batch_size=32, lr=1e-3), {}, "batch 32, lr 1e-3"),
    "b64": (dict(batch_size=64, lr=2e-3), {}, "batch 64, lr 2e-3 (the profile before batch 32)"),
    "b128": (dict(batch_size=128), {}, "batch 128"),
    # lr1e-3 and lr4e-3 halved and doubled the batch-64 profile's 2e-3; 1e-3 is the profile's own since batch 32
    "lr1e-3": (dict(lr=1e-3), {}, "lr 1e-3 (half the batch-64 profile's 2e-3)"),
    "lr4e-3": (dict(lr=4e-3), {}, "lr 4e-3 (twice the batch-64 profile's 2e-3)"),
    "lr2e-3": (dict(lr=2e-3), {}, "lr 2e-3 at batch 32 (twice the profile's)"),
    "lr5e-4": (dict(lr=5e-4), {}, "lr 5e-4 at batch 32 (half the profile's)"),
    "warm0": (dict(lr_warmup_steps=0), {}, "no warm-up"),
    "warm1000": (dict(lr_warmup_steps=1000), {}, "warm-up over 1,000 steps instead of 200"),
    "beta2-0.99": (dict(adam_betas=(0.9, 0.99)), {}, "Adam beta2 0.99 (second moments over ~100 steps)"),
    "beta2-0.95": (dict(adam_betas=(0.9, 0.95)), {}, "Adam beta2 0.95 (second moments over ~20 steps)"),
    "cosine": ({}, dict(schedule="cosine"), "cosine alpha-bar schedule (train and sample)"),
    "minsnr5": ({}, dict(min_snr=5.0), "Min-SNR-5 loss weights"),
}
EVAL = re.compile(r"^(profile|ddpm(\d+)(b?)|ddim(\d+)(?:e([0-9.]+))?)(?:@([0-9.]+|raw))?$")


def seconds_per_step(cfg, extras: dict, data: torch.Tensor, steps: int = 20, warmup: int = 5) -> float:
    """Wall seconds of one optimiser step of this arm, timed on a throwaway model."""
    model = build_model(cfg, "cpu")
    step = TrainStep(model, make_ddpm(cfg, extras), make_optimizer(model, cfg))
    g = torch.Generator().manual_seed(12345)
    x0 = data[:cfg.batch_size]
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        t = torch.randint(0, cfg.timesteps, (cfg.batch_size,), generator=g)
        step(x0, t, torch.randn(x0.shape, generator=g), None)
    return (time.perf_counter() - t0) / steps


@torch.no_grad()
def draw(model, ddpm: DDPM, cfg, spec: str, n: int, batch: int) -> torch.Tensor:
    """n images in [-1, 1] from the evaluation `spec` (its sampler part), seed fixed per spec."""
    m = EVAL.match(spec)
    kind = m.group(1)
    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    if kind == "profile":
        kind = f"{cfg.sampler}{cfg.sample_steps or cfg.timesteps}"
        m = EVAL.match(kind)
    if kind.startswith("ddpm"):
        if m.group(3):  # ddpm<K>b: sigma_t^2 = beta_t instead of the posterior's beta-tilde_t
            ddpm = DDPM(variance="beta", dtype=ddpm.betas.dtype, betas=ddpm.betas)
        return sample(model, ddpm, cfg, n=n, method="ddpm", steps=int(m.group(2)), generator=g, progress=False,
                      batch_size=batch)
    return sample(model, ddpm, cfg, n=n, method="ddim", steps=int(m.group(4)), eta=float(m.group(5) or 0),
                  generator=g, progress=False, batch_size=batch)


def evaluate(net, ddpm, cfg, spec, args, name: str = "") -> dict:
    """Draw args.samples images for one evaluation and score them: {fid, sample_s, score_s, samples}.
    With --save, the first 64 images go to <save>/<name>_<spec>.png (a run's FID alone hides what went wrong)."""
    t0 = time.perf_counter()
    images = draw(net, ddpm, cfg, spec, args.samples, cfg.sample_batch_size)
    t_sample = time.perf_counter() - t0
    if args.save:
        Path(args.save, f"{name}_{spec}.png").write_bytes(png_bytes(images[:64], upscale=2))
    t0 = time.perf_counter()
    score = fid.frechet_distance(*fid.tensor_stats(images, batch_size=cfg.fid_batch_size), *args.ref)
    return {"fid": score, "sample_s": t_sample, "score_s": time.perf_counter() - t0, "samples": args.samples}


def probe_images(cfg) -> torch.Tensor:
    """1,024 MNIST training images as the run's config prepares them (for mean_error)."""
    return load_tensor(subset(load_mnist(train=True, in_channels=cfg.in_channels), 1024), num_workers=0)


def load_record(path: Path) -> tuple[list[dict], dict]:
    """(rows, config) of the record at `path`, to resume it; ([], {}) when there is none yet."""
    if not path.exists():
        return [], {}
    rec = json.loads(path.read_text())
    problems = check_record(rec)
    if problems or rec["bench"] != "cpu_ablation":
        raise SystemExit(f"{path} is not a cpu_ablation record ({'; '.join(problems) or rec['bench']}): "
                         "give --json a new path")
    return rec["rows"], rec["config"]


def row_key(row: dict) -> tuple:
    """What makes a row done: (its name, "<arm> <evaluation>", seed, budget, fixed epochs)."""
    return row["name"], row["seed"], row.get("budget_s"), row.get("fixed_epochs")


def evaluate_run(run: Path, args, rows: list, config: dict, save) -> None:
    """The sampler evaluations on a trained run's EMA weights (the run's own training, its own EMA decay)."""
    ckpt = checkpoint_paths(run)[0]  # the newest
    ema = load_model(ckpt, "ema", device="cpu").eval()
    cfg = ema.config
    arm = f"run:{run.name}"
    config.setdefault("weights", {})[arm] = str(ckpt)  # the checkpoint evaluated
    nets = {None: ema}
    ddpm, probe = DDPM.from_config(cfg), probe_images(cfg)
    done = {row_key(r) for r in rows}
    for spec in args.evals:
        if (f"{arm} {spec}", cfg.seed, None, None) in done:
            continue
        which = EVAL.match(spec).group(6)
        if which not in (None, "raw"):
            raise SystemExit(f"{spec}: a run folder holds one EMA ({cfg.ema_decay}); drop the @<decay>")
        if which not in nets:  # the raw weights, loaded once for all the evaluations that ask for them
            nets[which] = load_model(ckpt, "model", device="cpu").eval()
        net = nets[which]
        row = {"name": f"{arm} {spec}", "seed": cfg.seed, "ema": None if which == "raw" else cfg.ema_decay,
               "params": count_parameters(net), "steps": int(ckpt.stem.split("_")[1]),
               "epochs": cfg.epochs, "train_s": None, "ms_per_step": None,
               "mean_err_T": mean_error(net, ddpm, probe),
               **evaluate(net, ddpm, cfg, spec, args, arm.replace(":", "_"))}
        rows.append(row)
        save()
        print(f"{arm} {spec}: FID {row['fid']:.2f}, mean error at T {row['mean_err_T']:.4f}, "
              f"sampling {row['sample_s']:.0f} s", flush=True)


def train_arm(arm: str, seed: int, todo: list[str], args, rows: list, datasets: dict, save) -> None:
    """Train one arm from scratch for the budget (or --epochs), then its evaluations `todo`, one row each."""
    overrides, extras, _ = ARMS[arm]
    budget = None if args.epochs else args.budget
    cfg = get_config("cpu", verbose=False, **{**overrides, **C.parse_sets(args.set), "seed": seed})
    data = C.training_data(cfg, datasets)
    if args.epochs:
        total = args.epochs * train.steps_per_epoch(len(data), cfg)
    else:
        total = max(1, int(budget / seconds_per_step(cfg, extras, data)))
    decays = sorted({*args.emas, cfg.ema_decay})
    model, emas, losses, secs = C.train_for(cfg, extras, data, budget, total, decays)
    total = len(losses)
    ddpm = make_ddpm(cfg, extras)
    name = f"{arm}_s{seed}_" + (f"{args.epochs}ep" if args.epochs else f"{budget:g}s")
    if args.save:  # the weights, to look again without training again
        torch.save({"config": cfg.to_dict(), "extras": extras, "model": model.state_dict(),
                    "emas": {d: e.state_dict() for d, e in emas.items()}, "losses": losses},
                   Path(args.save, f"{name}.pt"))
    for spec in todo:
        which = EVAL.match(spec).group(6)
        if which == "raw":  # the trained weights themselves, no EMA
            emas["raw"] = model
        decay = which if which == "raw" else float(which or cfg.ema_decay)
        if decay not in emas:
            raise SystemExit(f"{spec}: EMA {decay} was not kept; add it to --emas")
        row = {"name": f"{arm} {spec}", "seed": seed, "ema": None if decay == "raw" else decay, "budget_s": budget,
               "fixed_epochs": args.epochs, "mean_err_T": mean_error(emas[decay].eval(), ddpm, data[:1024]),
               "train_s": secs, "steps": total, "epochs": total * cfg.batch_size / len(data),
               "ms_per_step": 1e3 * secs / total, "params": count_parameters(model),
               "final_loss": statistics.fmean(losses[-200:]),
               **evaluate(emas[decay].eval(), ddpm, cfg, spec, args, name)}
        rows.append(row)
        save()
        print(f"{arm} seed {seed} {spec}: FID {row['fid']:.2f}, mean error at T {row['mean_err_T']:.4f}, "
              f"{total} steps in {secs:.0f} s, sampling {row['sample_s']:.0f} s", flush=True)


def arm_config(arm: str, sets: dict) -> dict:
    overrides, extras, lever = ARMS[arm]
    return {"overrides": {**overrides, **sets}, "extras": extras, "lever": lever}


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600.0, help="training seconds per run (default 600)")
    p.add_argument("--epochs", type=int, default=None,
                   help="instead of --budget: exactly this many epochs of each arm's own batch size, as a student's "
                        "run trains (the profile's is 5); rows then have budget_s null and fixed_epochs set")
    p.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--emas", nargs="*", type=float, default=[0.999, 0.9995, 0.9999],
                   help="EMA decays kept in every run (the profile's is always among them); @raw needs none")
    p.add_argument("--evals", nargs="*", default=["profile"],
                   help="per run: 'profile' (the profile's sampler and EMA), ddpm<K>[b], ddim<K>[e<eta>], "
                        "each optionally @<ema decay> or @raw, e.g. ddpm50 ddim50e0.5@0.9995 ddpm50@raw")
    p.add_argument("--samples", type=int, default=1000, help="images per FID (default 1,000)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides on top of every arm's (tests shrink sizes with them)")
    p.add_argument("--ref-count", type=int, default=None,
                   help="MNIST training images in the FID reference (default all 60,000, from the FID cache)")
    p.add_argument("--from-run", default=None, metavar="DIR",
                   help="no training: evaluate --evals on the EMA weights of a trained run folder (arm 'run:<name>')")
    C.add_json_arg(p, default="ablation.json")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="keep each run's weights (<arm>_s<seed>_<budget>s.pt or _<epochs>ep.pt) and a 64-sample "
                        "grid per evaluation")
    args = p.parse_args(argv)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    bad = [e for e in args.evals if not EVAL.match(e)]
    if bad:
        raise SystemExit(f"unknown evaluation(s) {bad}: use profile, ddpm<K>, ddpm<K>b, ddim<K> or ddim<K>e<eta>, "
                         "then @<decay> or @raw")
    path = Path(args.json)
    rows, config = load_record(path)
    sets = C.parse_sets(args.set)
    config.update(samples=args.samples, ref_count=args.ref_count, threads=torch.get_num_threads(),
                  arms={**config.get("arms", {}), **{a: arm_config(a, sets) for a in args.arms if not args.from_run}})
    save = lambda: write_record("cpu_ablation", rows, config, argv, path=path)  # noqa: E731
    ref_cfg = get_config("full", verbose=False, fid_ref_count=args.ref_count)
    args.ref = fid.load_stats(fid.reference_stats(ref_cfg, progress=False)[1])
    if args.from_run:
        evaluate_run(Path(args.from_run), args, rows, config, save)
    else:
        done, budget, datasets = {row_key(r) for r in rows}, None if args.epochs else args.budget, {}
        for arm in args.arms:
            for seed in args.seeds:
                todo = [e for e in args.evals if (f"{arm} {e}", seed, budget, args.epochs) not in done]
                if todo:
                    train_arm(arm, seed, todo, args, rows, datasets, save)
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r.get("budget_s"), r.get("fixed_epochs"), *r["name"].split(" ", 1)), []).append(r)
    lines = []
    for (budget, fixed, arm, spec), rs in groups.items():
        fids = [r["fid"] for r in rs]
        mean = lambda key, rs=rs: statistics.fmean(math.nan if r.get(key) is None else r[key] for r in rs)  # noqa
        ms = f"{mean('ms_per_step'):.0f}" if math.isfinite(mean("ms_per_step")) else "-"
        fid_mean = f"{statistics.fmean(fids):.2f}"
        errs = " / ".join(f"{r['mean_err_T']:.3f}" for r in rs if r.get("mean_err_T") is not None) or "-"
        plan = f"{budget:g} s" if budget is not None else f"{fixed} epochs" if fixed else "-"
        lines.append([plan, arm, spec, " / ".join(f"{f:.2f}" for f in fids),
                      fid_mean, errs, C.fmt_s(mean("train_s")), f"{mean('steps'):.0f}", f"{mean('epochs'):.1f}", ms,
                      f"{rs[0]['params'] / 1e6:.2f}M",
                      f"{mean('sample_s'):.0f} s", ARMS.get(arm, ({}, {}, "a trained run folder"))[2]])
    lines.sort(key=lambda r: (r[0], float(r[4])))  # by budget, then mean FID
    print(f"\nFID-{rows[0]['samples'] if rows else '?'} vs MNIST train (60,000) at equal training "
          f"time or epochs, {C.device_name('cpu')}")
    print("mean error at T: RMS of the image-mean of eps-hat - eps at t = T-1 (mean_error; 0.036 = ignores it)")
    print(C.table(lines, ["budget", "arm", "evaluation", "FID per seed", "mean", "mean error at T", "trained", "steps",
                          "epochs", "ms/step", "params", "sampling", "lever"]))


if __name__ == "__main__":
    raise SystemExit(main())
