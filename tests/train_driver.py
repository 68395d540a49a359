"""Runs `train` in its own process for the interruption tests (not a test module).

usage: python train_driver.py RUN_DIR FAST(0|1) [slow-steps|slow-fsync] [cond]
  slow-steps  print "STEP n" after every loss and pause briefly, so the test can SIGKILL mid-epoch
  slow-fsync  print "FSYNC" and pause while the second checkpoint is being written, so the test kills
              the process while that checkpoint is being written
  cond        train the class-conditional model (num_classes=10) with label dropout
The pauses only widen the window for the kill; the training arithmetic is untouched.
"""

import sys
import time

from conftest import tiny_config

from hw3_utils import train as tr

run_dir, tensor_data, mode = sys.argv[1], sys.argv[2] == "1", (sys.argv[3] if len(sys.argv) > 3 else "")
conditional = dict(num_classes=10, label_dropout=0.5) if sys.argv[4:] == ["cond"] else {}
cfg = tiny_config(tensor_data=tensor_data, epochs=3, num_workers=2, **conditional)

if mode == "slow-steps":
    real_loss = tr.DDPM.loss
    count = [0]

    def loss(self, *a, **k):
        out = real_loss(self, *a, **k)
        count[0] += 1
        print(f"STEP {count[0]}", flush=True)
        time.sleep(0.2)
        return out

    tr.DDPM.loss = loss
elif mode == "slow-fsync":
    real_save, saves = tr.torch.save, [0]

    def slow_save(obj, f, *a, **k):
        # called by atomic_save on the open temporary file, before flush/fsync/rename
        saves[0] += 1
        real_save(obj, f, *a, **k)
        if saves[0] == 2:
            print("FSYNC", flush=True)
            time.sleep(30)

    tr.torch.save = slow_save

result = tr.train_model(cfg, run_dir, progress=False)
print("DONE", len(result.history), flush=True)
