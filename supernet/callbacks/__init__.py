"""Keras callbacks for training ensembles."""

from supernet.callbacks.member_early_stopping import MemberEarlyStopping
from supernet.callbacks.snapshot_ensemble import SnapshotEnsemble, reset_optimizer_state
from supernet.callbacks.time_to_accuracy import TimeToAccuracy

__all__ = ["MemberEarlyStopping", "SnapshotEnsemble", "TimeToAccuracy", "reset_optimizer_state"]
