"""The digit classifier's MNIST test accuracy and training time (hw3_utils/digits.py; issue 41, item 4).

Trains the full classifier from scratch with `digits.train_classifier`, the call `load_classifier` makes
when nothing is cached, once per --seeds entry, on the CPU with torch's default threads, and scores it
on MNIST's 10,000 test images. The targets: at least 99% test accuracy, at most 3 minutes on 2 cores.
Writes commit, argv, config, machine (CPU model, load average at the start) and one row per seed.

    python bench/digits_classifier.py [--seeds 0] [--json bench/results/digits/<name>.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import _common as C  # first: puts the repo's hw3_utils on the path
import torch

from hw3_utils import digits
from hw3_utils.runfolder import cpu_model, environment


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=C.REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[digits.SEED])
    p.add_argument("--json", default=None, metavar="PATH", help="also write the record here")
    args = p.parse_args()
    machine = {"cpu": cpu_model(), "load_average_1_5_15": os.getloadavg(), **environment("cpu")}
    config = {"train_count": digits.MNIST_TRAIN, "epochs": digits.EPOCHS, "batch_size": digits.BATCH_SIZE,
              "max_lr": digits.MAX_LR, "weight_decay": digits.WEIGHT_DECAY, "shift": digits.SHIFT,
              "feature_dim": digits.FEATURE_DIM,
              "parameters": sum(q.numel() for q in digits.DigitClassifier().parameters())}
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        model = digits.train_classifier(None, seed=seed)
        train_s = time.perf_counter() - start
        rows.append({"seed": seed, "train_s": train_s, "test_accuracy": digits.mnist_test_accuracy(model),
                     "threads": torch.get_num_threads()})
        print(f"seed {seed}: {train_s:.1f} s, test accuracy {rows[-1]['test_accuracy']:.2%}", flush=True)
    load = machine["load_average_1_5_15"]
    print(f"{machine['cpu']}, {torch.get_num_threads()} threads, load average at the start {load}")
    print(C.table([[r["seed"], f"{r['train_s']:.1f}", f"{r['test_accuracy']:.4f}"] for r in rows],
                ["seed", "training (s)", "MNIST test accuracy"]))
    C.write_json(args.json, {"bench": "digits_classifier", "commit": _commit(), "argv": sys.argv, "config": config,
                           "machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
