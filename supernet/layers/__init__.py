"""Custom Keras layers."""

from supernet.layers.frozen_model import FrozenModel
from supernet.layers.grouped_dense import GroupedDense

__all__ = ["FrozenModel", "GroupedDense"]
