"""hw3_utils: the tested core of the DDPM-on-MNIST course kit.

config (Config, profiles) -> data (MNIST in [-1, 1]) -> unet (eps_theta) -> diffusion (DDPM:
schedule, q_sample, loss, p_sample) -> sampling (sample: Algorithm 2, respacing, DDIM, clipping)
-> train (EMA, checkpoints, resume) -> fid (pytorch-fid) -> viz (grids, process grid, sliders).
`python -m hw3_utils all` runs the pipeline headless.
"""

# First, before any module loads torch and with it OpenMP: how idle OpenMP threads wait (_openmp.py).
from ._openmp import OMP_SPIN_COUNT, TORCH_LOADED_FIRST
from .config import PROFILES, Config, config_diff, get_config, resolve_profile, run_dir, runs_dir
from .cuda_graphs import GraphedModel, TrainStep
from .data import DataNotFoundError, load_mnist, load_tensor, make_loader, mnist_transform, subset
from .diffusion import DDPM
from .digits import class_histogram, classifier_fid, classifier_kid, digit_accuracy, load_classifier
from .fid import (
    FIDError,
    FIDWeightsError,
    compute_fid,
    export_pngs,
    folder_stats,
    frechet_distance,
    generate_samples,
    load_pngs,
    load_stats,
    reference_npz,
    reference_stats,
    save_pngs,
    save_stats,
    tensor_stats,
)
from .pipeline import REPORT_FID, draw_samples, make_sampler, run_all
from .sampling import sample
from .train import (
    CheckpointError,
    NonFiniteLossError,
    TrainResult,
    build_model,
    checkpoint_info,
    load_checkpoint,
    load_model,
    load_newest_checkpoint,
    newest_checkpoint_info,
    pick_device,
    train_model,
)
from .unet import UNet, count_parameters, shape_walk, sinusoidal_embedding
from .viz import (
    denoising_slider,
    frame_slider,
    noising_frames,
    noising_slider,
    plot_loss,
    plot_schedule,
    plot_time_embedding,
    process_grid,
    save_figure,
    show_images,
)

__all__ = [
    "OMP_SPIN_COUNT",
    "TORCH_LOADED_FIRST",
    "PROFILES",
    "Config",
    "config_diff",
    "get_config",
    "resolve_profile",
    "run_dir",
    "runs_dir",
    "DataNotFoundError",
    "export_pngs",
    "load_mnist",
    "load_tensor",
    "make_loader",
    "mnist_transform",
    "subset",
    "DDPM",
    "sample",
    "GraphedModel",
    "TrainStep",
    "class_histogram",
    "classifier_fid",
    "classifier_kid",
    "digit_accuracy",
    "load_classifier",
    "FIDError",
    "FIDWeightsError",
    "compute_fid",
    "folder_stats",
    "frechet_distance",
    "generate_samples",
    "load_pngs",
    "load_stats",
    "reference_npz",
    "reference_stats",
    "save_pngs",
    "save_stats",
    "tensor_stats",
    "REPORT_FID",
    "make_sampler",
    "draw_samples",
    "run_all",
    "CheckpointError",
    "NonFiniteLossError",
    "TrainResult",
    "build_model",
    "checkpoint_info",
    "load_newest_checkpoint",
    "load_checkpoint",
    "load_model",
    "newest_checkpoint_info",
    "pick_device",
    "train_model",
    "UNet",
    "count_parameters",
    "shape_walk",
    "sinusoidal_embedding",
    "denoising_slider",
    "frame_slider",
    "noising_frames",
    "noising_slider",
    "plot_loss",
    "plot_schedule",
    "plot_time_embedding",
    "process_grid",
    "save_figure",
    "show_images",
]
