"""The Frechet distance: pytorch-fid's scipy `sqrtm` vs the kit's symmetric eigendecomposition.

Times both on the same statistics and prints the seconds, the speed-up and the relative
difference, for a full-rank case (more images than features) and a rank-deficient one (fewer:
the smoke profile's case, where pytorch-fid's sqrtm struggles). The statistics are of random
features with a correlated covariance, as Inception features have; only timing depends on them.

    python -m bench fid_speed                  # 2048-d, as FID uses: ~1 minute on 2 CPU cores
    python -m bench fid_speed --dims 256       # quicker
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bench import _common as C
from bench.record import write_record
from hw3_utils.fid import frechet_distance


def stats(rng, n: int, dims: int, shift: float):
    mix = rng.standard_normal((dims, dims)) / np.sqrt(dims)
    x = rng.standard_normal((n, dims)) @ mix + shift
    return x.mean(axis=0), np.cov(x, rowvar=False)


def timed(fn, repeats: int):
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, default=2048, help="feature dimension (FID: 2048)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many runs per method")
    C.add_json_arg(p)
    args = p.parse_args(argv)
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    cases = {"full rank": int(1.5 * args.dims), "rank-deficient": 32}
    rows, records = [], []
    for name, n in cases.items():
        m1, s1 = stats(rng, n, args.dims, 0.0)
        m2, s2 = stats(rng, n, args.dims, 0.05)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pytorch-fid's "singular product" warning in the rank-deficient case
            t_ref, ref = timed(lambda a=(m1, s1, m2, s2): calculate_frechet_distance(*a), args.repeats)
        t_ours, ours = timed(lambda a=(m1, s1, m2, s2): frechet_distance(*a), args.repeats)
        row = {"name": name, "images": n, "pytorch_fid_s": t_ref, "eigh_s": t_ours, "speedup": t_ref / t_ours,
               "fid_pytorch_fid": float(ref), "fid_eigh": ours, "rel_diff": abs(ours - ref) / abs(ref)}
        records.append(row)
        rows.append([name, n, f"{t_ref:.2f} s", f"{t_ours:.2f} s", f"{row['speedup']:.1f}x", f"{row['rel_diff']:.1e}"])
    print(f"Frechet distance, {args.dims}-d statistics, best of {args.repeats}, on "
          f"{C.device_name('cpu')}")
    print(C.table(rows, ["case", "images", "pytorch-fid (sqrtm)", "kit (eigh)", "speed-up", "relative diff"]))
    if args.json:
        write_record("fid_speed", records, {"dims": args.dims, "repeats": args.repeats}, argv, path=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
