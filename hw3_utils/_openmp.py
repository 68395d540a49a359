"""How idle OpenMP threads wait: imported by hw3_utils before anything loads torch (libgomp reads it once)."""

import os
import sys

# How long an idle thread spins before it sleeps: long enough to skip a wake-up between the cpu profile's
# short parallel regions, bounded because a spinning thread takes a core from any busy process beside it
# (docs/decisions/openmp-spin-count.md).
# A setting of either variable by the user is kept.
OMP_SPIN_COUNT = "10000"
# True when torch (and with it libgomp) was loaded before hw3_utils: then this setting comes too late
TORCH_LOADED_FIRST = "torch" in sys.modules
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = OMP_SPIN_COUNT
