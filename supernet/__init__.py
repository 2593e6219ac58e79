"""supernet: cheap, strong neural-network ensembles for Keras 3.

The public API at a glance; see the README for a tour.
"""

import os

# TensorFlow's C++ start-up chatter hides the progress output of long runs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from supernet import baselines, batchnorm, bootstrap, callbacks, data, distillation, losses, metrics, optimizers, reports, schedules, soups, training, transfer  # noqa: E402
from supernet.distillation import Distiller  # noqa: E402
from supernet.layers import FrozenModel, GroupedDense  # noqa: E402
from supernet.losses import LogitNormCrossentropy, MarginCrossentropy, MemberwiseCrossentropy  # noqa: E402
from supernet.models import (  # noqa: E402
    Ensemble,
    PartitionedMLP,
    SuperNet,
    build_supernet,
    choose_downscale,
    fit_head,
    mlp,
    mlp_params,
    partition_widths,
    scale_widths,
    resnet50_backbone,
    small_resnet,
    supernet_features,
    thesis_cnn,
    transfer_model,
    vgg16,
)

__version__ = "0.1.0"

__all__ = [
    "Distiller",
    "Ensemble",
    "FrozenModel",
    "LogitNormCrossentropy",
    "MarginCrossentropy",
    "baselines",
    "batchnorm",
    "bootstrap",
    "distillation",
    "callbacks",
    "optimizers",
    "schedules",
    "training",
    "GroupedDense",
    "MemberwiseCrossentropy",
    "PartitionedMLP",
    "SuperNet",
    "build_supernet",
    "choose_downscale",
    "data",
    "fit_head",
    "losses",
    "metrics",
    "mlp",
    "mlp_params",
    "partition_widths",
    "scale_widths",
    "reports",
    "resnet50_backbone",
    "small_resnet",
    "soups",
    "transfer",
    "transfer_model",
    "supernet_features",
    "thesis_cnn",
    "vgg16",
]
