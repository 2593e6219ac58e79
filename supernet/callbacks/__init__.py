"""Keras callbacks (and fit drivers) for training ensembles."""

from supernet.callbacks.epoch_scores import EpochScores
from supernet.callbacks.epoch_timer import EpochTimer
from supernet.callbacks.layer_by_layer import (
    StageResult,
    layer_by_layer_stages,
    retrain_last_layers,
    retrain_layer_by_layer,
    trainable_layers,
)
from supernet.callbacks.member_early_stopping import MemberEarlyStopping
from supernet.callbacks.snapshot_ensemble import SnapshotEnsemble, reset_optimizer_state
from supernet.callbacks.snapshot_weights import SnapshotWeights
from supernet.callbacks.time_to_accuracy import TimeToAccuracy

__all__ = [
    "EpochScores",
    "EpochTimer",
    "MemberEarlyStopping",
    "SnapshotEnsemble",
    "SnapshotWeights",
    "StageResult",
    "TimeToAccuracy",
    "layer_by_layer_stages",
    "reset_optimizer_state",
    "retrain_last_layers",
    "retrain_layer_by_layer",
    "trainable_layers",
]
