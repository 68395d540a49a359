"""Does a setting let the cpu profile's network follow the image mean of x_t near t = T? A quick screen.

A cpu-profile network that ignores that mean draws grey backgrounds and bright blobs
(docs/decisions/groupnorm-one-group.md; `DDPM.mean_error`). Whether it learns to follow it shows early: this
trains the `cpu` profile with each --sets' overrides on the profile's own lr schedule (warm-up, cosine decay over
its 5 epochs), but stops after --stop steps, and at each --track step records, for the EMA weights:
- `slope`: the least-squares slope of the image mean of eps-hat on the image mean of x_t at t = T-1
  (`levers.mean_slope`; 1 = follows it, 0 = blind to it);
- `mean_err_T`: `DDPM.mean_error` at t = T-1 (0.036 = ignores it).
Training is `_common.train_for` (the kit's `TrainStep`, `lr_at`, EMA update, data order). The screen
only says which settings deserve a full run: FID comes from `python -m hw3_utils train` and
`python -m bench cpu_ablation --from-run`. A benchmark: prints, asserts nothing. Rows are named by their
setting; one row per tracked step, then one per run (`whole run`: steps, seconds, the last 50 losses' mean).

    python -m bench mean_screen --sets groups=8 groups=4 groups=2 groups=1 --seeds 1   # about 8 minutes
"""

from __future__ import annotations

import argparse

import torch

from bench import _common as C
from bench.levers import make_ddpm, mean_error, mean_slope
from bench.record import write_record
from hw3_utils import get_config


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=["groups=8", "groups=1"], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="one setting per word: overrides of the cpu profile, separated by commas")
    p.add_argument("--seeds", nargs="*", type=int, default=[1])
    p.add_argument("--stop", type=int, default=1000, help="steps to train (default 1,000)")
    p.add_argument("--track", nargs="*", type=int, default=[100, 250, 500, 750, 1000])
    C.add_json_arg(p)
    args = p.parse_args(argv)
    config = {"profile": "cpu", "stop": args.stop, "track": args.track, "probe_images": 512}
    rows, runs = [], []
    print("| setting | seed | step | slope | mean_err_T |")
    print("| --- | --- | --- | --- | --- |")
    datasets: dict[tuple, torch.Tensor] = {}  # C.training_data's cache
    for setting in args.sets:
        overrides = C.parse_sets(setting.split(","))
        for seed in args.seeds:
            cfg = get_config("cpu", verbose=False, **{**overrides, "seed": seed})
            data = C.training_data(cfg, datasets)
            ddpm, probe = make_ddpm(cfg, {}), data[:512]
            total = cfg.epochs * (len(data) // cfg.batch_size)  # the profile's schedule, full batches

            def on_step(step, model, emas, cfg=cfg, ddpm=ddpm, probe=probe, setting=setting, seed=seed):
                if step in args.track:
                    ema = emas[cfg.ema_decay].eval()
                    row = {"name": setting, "seed": seed, "step": step,
                           "slope": mean_slope(ema, ddpm, probe), "mean_err_T": mean_error(ema, ddpm, probe)}
                    rows.append(row)
                    print(f"| {setting} | {seed} | {step} | {row['slope']:.3f} | {row['mean_err_T']:.4f} |",
                          flush=True)

            _, _, losses, secs = C.train_for(cfg, {}, data, None, total, [cfg.ema_decay],
                                             stop=args.stop, on_step=on_step)
            runs.append({"name": f"{setting}: whole run", "seed": seed, "steps": len(losses), "train_s": secs,
                         "loss_last_50": sum(losses[-50:]) / len(losses[-50:])})
            if args.json:
                write_record("mean_screen", rows + runs, config, argv, path=args.json)
    for r in runs:
        print(f"{r['name']}, seed {r['seed']}: {r['steps']} steps in {r['train_s']:.0f} s, "
              f"loss over the last 50 {r['loss_last_50']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
