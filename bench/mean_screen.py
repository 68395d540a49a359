"""Does a setting let the cpu profile's network follow the image mean of x_t near t = T? A quick screen.

A cpu-profile network that ignores that mean draws grey backgrounds and bright blobs (README, "The cpu
profile"; `DDPM.mean_error`). Whether it learns to follow it shows early: this trains the `cpu` profile
with each --set's overrides on the profile's own lr schedule (warm-up, cosine decay over its 5 epochs), but
stops after --stop steps, and at each --track step prints, for the EMA weights:
- `slope`: the least-squares slope of the image mean of eps-hat on the image mean of x_t at t = T-1
  (`cpu_ablation.mean_slope`; 1 = follows it, 0 = blind to it);
- `mean_err_T`: `DDPM.mean_error` at t = T-1 (0.036 = ignores it).
Training is `cpu_ablation.train_for` (the kit's `TrainStep`, `lr_at`, EMA update, data order). The screen
only says which settings deserve a full run: FID comes from `python -m hw3_utils train` and
`cpu_ablation.py --from-run`. A benchmark: prints, asserts nothing.

    python bench/mean_screen.py --sets groups=8 groups=4 groups=2 groups=1 --seeds 1   # about 8 minutes
"""

from __future__ import annotations

import argparse

import _common as C
import cpu_ablation as A
import torch

from hw3_utils import get_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=["groups=8", "groups=1"], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="one setting per word: overrides of the cpu profile, separated by commas")
    p.add_argument("--seeds", nargs="*", type=int, default=[1])
    p.add_argument("--stop", type=int, default=1000, help="steps to train (default 1,000)")
    p.add_argument("--track", nargs="*", type=int, default=[100, 250, 500, 750, 1000])
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    record = {"bench": "mean_screen", **C.environment(torch.device("cpu")), "stop": args.stop,
              "rows": [], "runs": []}
    print("| setting | seed | step | slope | mean_err_T |")
    print("| --- | --- | --- | --- | --- |")
    datasets: dict[tuple, torch.Tensor] = {}  # A.training_data's cache
    for setting in args.sets:
        overrides = C.parse_sets(setting.split(","))
        for seed in args.seeds:
            cfg = get_config("cpu", verbose=False, **{**overrides, "seed": seed})
            data = A.training_data(cfg, datasets)
            ddpm, probe = A.make_ddpm(cfg, {}), data[:512]
            total = cfg.epochs * (len(data) // cfg.batch_size)  # the profile's schedule, full batches

            def on_step(step, model, emas, cfg=cfg, ddpm=ddpm, probe=probe, setting=setting, seed=seed):
                if step in args.track:
                    ema = emas[cfg.ema_decay].eval()
                    row = {"setting": setting, "seed": seed, "step": step,
                           "slope": A.mean_slope(ema, ddpm, probe), "mean_err_T": A.mean_error(ema, ddpm, probe)}
                    record["rows"].append(row)
                    print(f"| {setting} | {seed} | {step} | {row['slope']:.3f} | {row['mean_err_T']:.4f} |",
                          flush=True)

            _, _, losses, secs = A.train_for(cfg, {}, data, None, total, [cfg.ema_decay],
                                             stop=args.stop, on_step=on_step)
            record["runs"].append({"setting": setting, "seed": seed, "steps": len(losses), "train_s": secs,
                                   "loss_last_50": sum(losses[-50:]) / len(losses[-50:])})
            if args.json:
                C.write_json(args.json, record)
    for r in record["runs"]:
        print(f"{r['setting']} seed {r['seed']}: {r['steps']} steps in {r['train_s']:.0f} s, "
              f"loss over the last 50 {r['loss_last_50']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
