"""One seed for every random number generator a training run touches."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this to be deterministic; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op without a deterministic kernel warns instead of aborting the run
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        # Setting the thread count, even to its current value, also turns oneMKL's dynamic
        # threading off (at::set_num_threads calls mkl_set_dynamic(false)). With it on, MKL may
        # split a product over fewer threads on a busy machine, which changes the order of
        # float sums and so the trained weights' last bits.
        torch.set_num_threads(torch.get_num_threads())
