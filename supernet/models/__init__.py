"""Model builders: partitioned MLPs, SuperNet heads, the thesis's conv nets."""

from supernet.models.ensemble import Ensemble
from supernet.models.partitioned_mlp import PartitionedMLP, ScaledWidths, mlp, mlp_params, partition_widths, scale_widths
from supernet.models.resnet import resnet50_backbone, small_resnet, transfer_model
from supernet.models.thesis_cnn import thesis_cnn
from supernet.models.vgg16 import vgg16
from supernet.models.supernet import (
    SuperNet,
    build_supernet,
    choose_downscale,
    fit_head,
    supernet_features,
)

__all__ = [
    "Ensemble",
    "PartitionedMLP",
    "SuperNet",
    "build_supernet",
    "choose_downscale",
    "fit_head",
    "mlp",
    "mlp_params",
    "resnet50_backbone",
    "small_resnet",
    "transfer_model",
    "partition_widths",
    "scale_widths",
    "ScaledWidths",
    "supernet_features",
    "thesis_cnn",
    "vgg16",
]
