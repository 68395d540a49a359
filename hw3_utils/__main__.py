"""Headless pipeline: python -m hw3_utils train|sample|fid|all [--profile P] [--out runs/NAME].

  train   train (or resume) into <out>/checkpoints
  sample  write cfg.num_samples PNGs from the EMA weights into <out>/samples_<checkpoint>
  fid     FID of those samples against MNIST (PNG folder and cached .npz) -> <out>/fid.json
  all     all of the above plus loss curve, process grid and sample grid
"""

from __future__ import annotations

import argparse
import json
import sys

from . import fid as fidlib
from .config import get_config, parse_overrides, run_dir
from .pipeline import REPORT_FID, environment, make_sampler, run_all, samples_folder
from .train import load_model, pick_device, train


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw3_utils", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "sample", "fid", "all"])
    p.add_argument("--profile", default=None,
                   help="full or smoke (default: $HW3_PROFILE, else full on CUDA, smoke on CPU)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<profile>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set epochs=5 lr=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    try:
        cfg = get_config(args.profile, **parse_overrides(args.set))
    except (ValueError, TypeError) as err:
        p.error(str(err))
    out = run_dir(args.out, cfg) if args.out is None else args.out
    device = pick_device(args.device)
    progress = not args.no_progress
    print(f"hw3_utils: {args.command} on {device}, run folder {out}")

    if args.command == "train":
        result = train(cfg, out, device=device, progress=progress)
        print(f"trained to epoch {len(result.history)}, final mean loss {result.history[-1]:.4f}")
    elif args.command == "sample":
        model = load_model(out, "ema", device)
        folder = fidlib.generate_samples(make_sampler(model, cfg, progress=False), samples_folder(out),
                                         cfg.num_samples, cfg.sample_batch_size, cfg.seed, device, progress)
        print(f"{cfg.num_samples} samples in {folder}")
    elif args.command == "fid":
        ref_folder, ref_npz = fidlib.reference_stats(cfg, device=device)
        stats = fidlib.folder_stats(samples_folder(out), device, cfg.fid_batch_size, expected=cfg.num_samples)
        record = {"fid_vs_mnist_png": fidlib.compute_fid(stats, ref_folder, device),
                  "fid_vs_mnist_npz": fidlib.compute_fid(stats, ref_npz, device),
                  "num_samples": cfg.num_samples, "report": REPORT_FID, **environment()}
        with open(f"{out}/fid.json", "w") as f:
            json.dump(record, f, indent=2)
        print(json.dumps(record, indent=2))
    else:
        record = run_all(cfg, out, device=device, progress=progress)
        print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
