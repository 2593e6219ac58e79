"""Keras callbacks for training ensembles."""

from supernet.callbacks.member_early_stopping import MemberEarlyStopping
from supernet.callbacks.time_to_accuracy import TimeToAccuracy

__all__ = ["MemberEarlyStopping", "TimeToAccuracy"]
