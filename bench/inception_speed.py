"""FID's Inception on a CPU: pytorch-fid's eager network vs TorchScript freezing, same features.

Runs the same fixed images (the first --images MNIST test images, as 28x28 RGB PNG-quantised
tensors, exactly what the kit scores) through each variant of pytorch-fid's InceptionV3 (pool3,
2048-d, 299x299 inside the network):

- `eager`: pytorch-fid's module as it ships, NCHW (the reference);
- `eager-cl`: the same module with channels_last weights and inputs;
- `folded-cl`: eager still, each batch norm folded into the convolution before it
  (`torch.nn.utils.fusion.fuse_conv_bn_eval`, as `fid.fold_batch_norms` does), channels_last;
- `frozen-cl`: `torch.jit.trace` + `torch.jit.freeze` (batch norm folded into the convolutions,
  constants inlined), channels_last;
- `ofi`: `torch.jit.optimize_for_inference` (freezing plus oneDNN layouts and fusions), NCHW input.

Prints images/s (best of --repeats passes after a warm-up batch), the largest relative feature
difference to `eager` (max |a - b| / max |b| over all features) and the FID of those images
against MNIST's training statistics with each variant's features, beside eager's.
Needs the cached statistics (runs/fid_cache/mnist_train_all.npz or $HW3_RUNS_DIR's).

    python -m bench inception_speed --images 500 --json /tmp/inception.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench import _common as C
from bench.record import write_record
from hw3_utils import fid, get_config
from hw3_utils.data import load_mnist

VARIANTS = ("eager", "eager-cl", "folded-cl", "frozen-cl", "ofi")


def images(n: int) -> torch.Tensor:
    """The first n MNIST test images as (n, 3, 28, 28) float in [0, 1], PNG-quantised (as the kit scores)."""
    ds = load_mnist(train=False, in_channels=3, download=False)
    x = torch.stack([ds[i][0] for i in range(n)])  # (n, 3, 28, 28) in [-1, 1]
    return fid.to_uint8(x).permute(0, 3, 1, 2).float().div(255)


class Pool3(torch.nn.Module):
    """pytorch-fid's InceptionV3 returning its one output tensor (B, 2048, 1, 1), as tracing needs."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[0]


def build(variant: str, batch: torch.Tensor):
    """A callable images (B, 3, 28, 28) in [0, 1] -> pool3 features (B, 2048) for one variant."""
    from pytorch_fid.inception import InceptionV3

    net = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[fid.DIMS]]).eval()
    cl = variant in ("eager-cl", "folded-cl", "frozen-cl")
    if variant == "folded-cl":
        net = fid.fold_batch_norms(net)
    if cl:
        net = net.to(memory_format=torch.channels_last)

    def prep(x):
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    if variant.startswith(("eager", "folded")):
        return lambda x: net(prep(x))[0].flatten(1)
    with torch.no_grad():
        traced = torch.jit.trace(Pool3(net).eval(), prep(batch), check_trace=False)
    frozen = torch.jit.freeze(traced) if variant == "frozen-cl" else torch.jit.optimize_for_inference(traced)
    return lambda x: frozen(prep(x)).flatten(1)


@torch.no_grad()
def features(fn, x: torch.Tensor, batch_size: int) -> np.ndarray:
    return np.concatenate([fn(x[s:s + batch_size]).double().numpy() for s in range(0, len(x), batch_size)])


def main(argv=None) -> int:
    argv = C.argv_of(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=500, help="MNIST test images to score (default 500)")
    p.add_argument("--batch-size", type=int, default=50, help="Inception batch (the kit's fid_batch_size: 50)")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per variant; the best counts")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--ref-count", type=int, default=None,
                   help="MNIST training images in the FID reference (default all 60,000, from the FID cache)")
    C.add_json_arg(p)
    args = p.parse_args(argv)
    x = images(args.images)
    ref_cfg = get_config("full", verbose=False, fid_ref_count=args.ref_count)
    mu_ref, sigma_ref = fid.load_stats(fid.reference_stats(ref_cfg, progress=False)[1])
    feats, rows, records = {}, [], []
    for variant in args.variants:
        t0 = time.perf_counter()
        fn = build(variant, x[:args.batch_size])
        with torch.no_grad():
            fn(x[:args.batch_size])  # warm-up: oneDNN primitives, the profiling executor's first runs
        setup = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            f = features(fn, x, args.batch_size)
            best = min(best, time.perf_counter() - t0)
        feats[variant] = f
        ref = feats.get("eager", f)
        rel = float(np.abs(f - ref).max() / np.abs(ref).max())
        score = fid.frechet_distance(*fid.activation_stats(f), mu_ref, sigma_ref)
        row = {"name": variant, "images_per_s": args.images / best, "seconds": best, "setup_s": setup,
               "max_rel_feature_diff": rel, "fid_vs_train": score}
        records.append(row)
        base = records[0]
        rows.append([variant, f"{row['images_per_s']:.1f}", f"{best / base['seconds']:.2f}", f"{setup:.1f} s",
                     f"{rel:.1e}", f"{score:.4f}", f"{score - base['fid_vs_train']:+.4f}"])
        print(rows[-1], flush=True)
    print(f"\nInception pool3 over {args.images} MNIST test images, batch {args.batch_size}, "
          f"{C.device_name('cpu')}, torch {torch.__version__}")
    print(C.table(rows, ["variant", "images/s", "time vs first", "setup + warm-up", "max rel. feature diff",
                         "FID vs train", "FID diff"]))
    if args.json:
        config = {"images": args.images, "batch_size": args.batch_size, "repeats": args.repeats,
                  "ref_count": args.ref_count}
        write_record("inception_speed", records, config, argv, path=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
