"""Model builders: partitioned MLPs and SuperNet heads."""

from supernet.models.partitioned_mlp import PartitionedMLP, mlp, partition_widths
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
]
