"""Model builders: partitioned MLPs, SuperNet heads, the thesis's conv nets."""

from supernet.models.partitioned_mlp import PartitionedMLP, mlp, partition_widths
from supernet.models.thesis_cnn import thesis_cnn
from supernet.models.vgg16 import vgg16
from supernet.models.supernet import (
    build_supernet,
    choose_downscale,
    fit_head,
    supernet_features,
)

__all__ = [
    "PartitionedMLP",
    "build_supernet",
    "choose_downscale",
    "fit_head",
    "mlp",
    "partition_widths",
    "supernet_features",
    "thesis_cnn",
    "vgg16",
]
