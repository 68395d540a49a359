"""Headless pipeline: python -m hw3_utils train|sample|fid|all [--profile P] [--out runs/NAME].

  train   train (or resume) into <out>/checkpoints; 16 samples after each epoch in <out>/previews
  sample  write cfg.num_samples PNGs from the EMA weights into <out>/samples_<checkpoint>
  fid     FID of those samples vs MNIST train and test, and the real-vs-real floor -> <out>/fid.json
  all     all of the above plus loss curve, process grid and sample grid

A mistake in the arguments, a missing checkpoint, data or FID weights prints one line that
says what to do, and exits with status 2; --debug shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from . import fid as fidlib
from .config import ConfigError, get_config, parse_overrides, run_dir
from .data import DataNotFoundError
from .pipeline import draw_samples, fid_table, make_sampler, print_fid_table, run_all, samples_folder, save_previews
from .runfolder import FIGURES, write_fid_json
from .train import CheckpointError, NonFiniteLossError, load_model, pick_device, train_model

# Errors a user can cause and fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, CheckpointError, DataNotFoundError, fidlib.FIDError, fidlib.FIDWeightsError,
               NonFiniteLossError)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hw3_utils", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["train", "sample", "fid", "all"])
    p.add_argument("--profile", default=None,
                   help="full, cpu, or their test-size twins full-smoke and cpu-smoke "
                        "(default: $HW3_PROFILE, else full on CUDA, cpu without)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<profile>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set epochs=5 lr=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p


def run(args) -> int:
    cfg = get_config(args.profile, **parse_overrides(args.set))
    out = run_dir(args.out, cfg) if args.out is None else args.out
    try:
        device = pick_device(args.device)
    except RuntimeError as err:
        raise ConfigError(f"--device {args.device!r} is not a device torch knows ({err}); use cpu or cuda") from err
    progress = not args.no_progress
    print(f"hw3_utils: {args.command} on {device}, run folder {out}")

    if args.command == "train":
        result = train_model(cfg, out, device=device, progress=progress, on_epoch=save_previews(out, cfg))
        print(f"trained to epoch {len(result.history)}, final mean loss {result.history[-1]:.4f}")
    elif args.command == "sample":
        model = load_model(out, "ema", device)
        folder = draw_samples(make_sampler(model, cfg, progress=False), cfg, samples_folder(out), device=device,
                              progress=progress)
        print(f"{cfg.num_samples} samples in {folder}")
    elif args.command == "fid":
        table = fid_table(out, cfg, device)
        write_fid_json(out, cfg, table, device)
        print_fid_table(table)
    else:
        record = run_all(cfg, out, device=device, progress=progress)
        print_fid_table(record)
        print(f"all results in {out} (fid.json, {', '.join(f + '.png' for f in FIGURES)})")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        # one line: the first line of the message carries what was wrong and what to do
        text = " ".join(str(err).split("\n"))
        print(f"error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
