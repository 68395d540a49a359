"""FID at 1,000 samples against FID at 10,000: one trained run and real digits, scored both ways.

The cpu profile is scored on 1,000 samples (notebook 05, `make quality`); the report scored 10,000. A FID
estimate is biased upwards by a term that shrinks about as 1/N (Chong & Forsyth 2020, arXiv:1911.07023,
"Effectively Unbiased FID"), so a FID-1k and a FID-10k do not compare. This bench measures the gap:

- it draws --samples images from a trained run with the run's own sampler, batches and seeds (as notebook 05
  does, so the first cfg.num_samples are the notebook's), into a folder of its own;
- runs Inception over them once (the features are kept, so a re-run skips this);
- scores all of them against MNIST train, and each disjoint block of --block images (the spread of the
  blocks is what sampling noise alone does to one FID-1k);
- scores real digits the same two ways from the FID cache: the first --block MNIST test images (the
  floor of notebook 05) and the run's test reference (all 10,000), against the same training statistics;
- and prints what the report's FID-10k (`REPORT_FID`) would read at --block samples if its gap were the
  real digits' gap or this run's gap: an estimate, labelled as one.

Its record's rows: each block's FID ("this run, block K"), "this run, all", the real digits' two, the two
estimates, and "timing" (seconds to sample and to run Inception; cached when the features were kept).

    python -m bench fid_sample_count --run runs/cpu --json bench/results/fid_sample_count/<name>.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bench import _common as C
from bench.record import write_record
from hw3_utils import REPORT_FID, Config, draw_samples, load_model, make_sampler
from hw3_utils import fid as fidlib
from hw3_utils.pipeline import samples_folder
from hw3_utils.runfolder import SAMPLES_PREFIX, config_path


def features(run: Path, cfg: Config, n: int, folder: Path, device, progress: bool) -> tuple[np.ndarray, dict]:
    """(n, 2048) Inception features of n samples of the run's newest EMA weights, and the seconds spent."""
    cache = folder / f"features_{n}.npy"
    if cache.exists():
        return np.load(cache), {"sample_s": 0.0, "inception_s": 0.0, "cached": True}
    model = load_model(run, "ema", device)
    t0 = time.perf_counter()
    draw_samples(make_sampler(model, cfg, progress=False), cfg, folder, n, device=device, progress=progress)
    t1 = time.perf_counter()
    files = fidlib.check_folder(folder, n)  # exactly n PNGs, or an error saying what is wrong
    act = fidlib.folder_activations(files, fidlib.inception(device), cfg.fid_batch_size, progress=progress)
    t2 = time.perf_counter()
    np.save(cache, act)
    return act, {"sample_s": t1 - t0, "inception_s": t2 - t1, "cached": False}


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a trained run folder (config.json, checkpoints/)")
    p.add_argument("--samples", type=int, default=10_000, help="samples to draw (default 10,000, the report's)")
    p.add_argument("--block", type=int, default=None, help="block size (default the run's num_samples)")
    p.add_argument("--out", default=None, help="sample folder (default <run>/eval/samples_<ckpt>_count_<samples>)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    C.add_json_arg(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run = Path(args.run)
    if not config_path(run).exists():
        raise SystemExit(f"{run} is not a trained run folder (no config.json): train one first, e.g. "
                         "`python -m hw3_utils train --out DIR`")
    cfg = Config.load(config_path(run))
    progress = not args.no_progress
    block = args.block or cfg.num_samples
    if not 2 <= block <= args.samples or block > fidlib.MNIST_SIZES["test"]:
        raise SystemExit(f"--block {block} must be in [2, --samples] and at most 10,000 (MNIST test)")
    device = C.device_from_args(args)
    weights = samples_folder(run).name  # samples_<newest checkpoint>, notebook 05's folder name
    # named after the weights that drew them (as notebook 05's folder is), so more training never reuses them
    folder = Path(args.out) if args.out else run / "eval" / f"{weights}_count_{args.samples}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fid_sample_count on {C.device_name(device)}: {args.samples} samples of {weights} "
          f"({cfg.profile} profile), blocks of {block}")

    act, times = features(run, cfg, args.samples, folder, device, progress)
    _, train_npz = fidlib.reference_stats(cfg, device=device, progress=progress)
    train = fidlib.load_stats(train_npz)

    def fid(stats) -> float:
        return fidlib.frechet_distance(*stats, *train)

    blocks = [fid(fidlib.activation_stats(act[s:s + block])) for s in range(0, args.samples - block + 1, block)]
    model_all = fid(fidlib.activation_stats(act))
    n_test = fidlib.reference_count(cfg, "test")  # the run's own test reference: all 10,000 in the profiles
    real = {n: fid(fidlib.load_stats(fidlib.reference_stats(cfg, device=device, split="test", count=n,
                                                                progress=progress)[1]))
            for n in (block, n_test)}
    gap_real = real[block] - real[n_test]
    gap_model = statistics.mean(blocks) - model_all
    report = REPORT_FID["vs MNIST .npz"]
    est = {"real digits'": report + gap_real, "this run's": report + gap_model}
    if args.json:
        rows = [*({"name": f"this run, block {k + 1}", "fid": f, "images": block} for k, f in enumerate(blocks)),
                {"name": "this run, all", "fid": model_all, "images": args.samples},
                {"name": "real: MNIST test, the first block", "fid": real[block], "images": block},
                {"name": "real: MNIST test, all", "fid": real[n_test], "images": n_test},
                *({"name": f"the report at a block, if its gap were {k} (estimate)", "fid": v, "images": block}
                  for k, v in est.items()),
                {"name": "timing", **times}]
        config = {"run": str(run), "profile": cfg.profile, "checkpoint": weights.removeprefix(SAMPLES_PREFIX),
                  "samples": args.samples, "block": block, "report_fid_10k": report}
        write_record("fid_sample_count", rows, config, argv, path=args.json, device=device)

    rows = [
        [f"this run ({cfg.profile})", f"{statistics.mean(blocks):.2f} (mean of {len(blocks)} blocks, "
         f"{min(blocks):.2f} to {max(blocks):.2f})", f"{model_all:.2f} ({args.samples:,} samples)"],
        ["real: MNIST test vs train", f"{real[block]:.2f} (the first {block:,})",
         f"{real[n_test]:.2f} ({n_test:,} test images)"],
        ["the report (50 epochs on a GPU)", f"estimate {min(est.values()):.2f} to {max(est.values()):.2f}",
         f"{report} (its FID-10k)"],
    ]
    head = f"FID vs MNIST train ({fidlib.reference_count(cfg, 'train'):,})"
    print(C.table(rows, [head, f"{block:,} images", f"{args.samples:,} images"]))
    print(f"gap between the two counts: real digits {gap_real:.2f}, this run {gap_model:.2f}. The report's row "
          "adds each gap to its FID-10k: an estimate, not a measurement.")
    if not times["cached"]:
        print(f"sampling {times['sample_s']:.1f} s, Inception {times['inception_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
