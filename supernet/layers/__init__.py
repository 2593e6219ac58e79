"""Custom Keras layers."""

from supernet.layers.byte_dropout import ByteDropout
from supernet.layers.frozen_model import FrozenModel
from supernet.layers.grouped_dense import GroupedDense
from supernet.layers.swap_member_axis import SwapMemberAxis

__all__ = ["ByteDropout", "FrozenModel", "GroupedDense", "SwapMemberAxis"]
