"""How idle OpenMP threads wait: imported by hw3_utils before anything loads torch (libgomp reads it once)."""

import os
import sys

# How long an idle thread spins before it sleeps. libgomp's own
# 300,000 spins (about 3 ms) made a small model's calls up to 30x slower whenever another process
# (a browser, a second kernel) kept a core busy; never spinning (OMP_WAIT_POLICY=PASSIVE) made the cpu
# profile's training step 1.4x slower on an idle machine, a wake-up at every one of its short parallel
# regions. 10,000 spins keep the speed alone and cost little beside a busy process (bench/omp_spin.py,
# README "The cpu profile").
# A setting of either variable by the user is kept.
OMP_SPIN_COUNT = "10000"
# True when torch (and with it libgomp) was loaded before hw3_utils: then this setting comes too late
TORCH_LOADED_FIRST = "torch" in sys.modules
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
