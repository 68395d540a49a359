"""The digit classifier's MNIST test accuracy and training time (hw3_utils/digits.py; issue 41, item 4).

Trains the full classifier from scratch with `digits.train_classifier`, the call `load_classifier` makes
when nothing is cached, once per --seeds entry, on the CPU with torch's default threads, and scores it
on MNIST's 10,000 test images. The targets: at least 99% test accuracy, at most 3 minutes on 2 cores.
Its record: the recipe as config, the machine with its load average at the start, one row per seed.

    python -m bench digits_classifier [--seeds 0] [--json bench/results/digits_classifier/<name>.json]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench import _common as C
from bench.record import write_record
from hw3_utils import digits


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[digits.SEED])
    C.add_json_arg(p)
    args = p.parse_args(argv)
    load = os.getloadavg()
    config = {"train_count": digits.MNIST_TRAIN, "epochs": digits.EPOCHS, "batch_size": digits.BATCH_SIZE,
              "max_lr": digits.MAX_LR, "weight_decay": digits.WEIGHT_DECAY, "shift": digits.SHIFT,
              "feature_dim": digits.FEATURE_DIM,
              "parameters": sum(q.numel() for q in digits.DigitClassifier().parameters())}
    rows = []
    for seed in args.seeds:
        load_before, start = os.getloadavg()[0], time.perf_counter()
        model = digits.train_classifier(None, seed=seed)
        train_s = time.perf_counter() - start
        # the 1-minute load average before and after: other processes on the cores slow the training down
        rows.append({"name": f"seed {seed}", "seed": seed, "train_s": train_s,
                     "test_accuracy": digits.mnist_test_accuracy(model), "threads": torch.get_num_threads(),
                     "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]})
        print(f"seed {seed}: {train_s:.1f} s, test accuracy {rows[-1]['test_accuracy']:.2%}", flush=True)
    print(f"{C.device_name('cpu')}, load average at the start {load}")
    print(C.table([[r["seed"], f"{r['train_s']:.1f}", f"{r['test_accuracy']:.4f}"] for r in rows],
                ["seed", "training (s)", "MNIST test accuracy"]))
    if args.json:
        write_record("digits_classifier", rows, config, argv, path=args.json, machine={"load_average_1_5_15": load})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
