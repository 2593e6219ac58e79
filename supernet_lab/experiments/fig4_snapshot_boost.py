"""Thesis Fig. 4: snapshots of one Table-2 CNN boosted layer by layer vs continued training.

Protocol (thesis section 3.1, Fig. 4). One thesis CNN (Table 2;
`supernet.models.thesis_cnn`) is trained normally on CIFAR-10 with Adam;
its weights are snapshotted after several epochs (thesis: 4, 19, 70 and
107). Each snapshot is then boosted: its last four layers are retrained one
at a time, starting from the last, four epochs each
(`supernet.callbacks.retrain_last_layers`, fresh Adam per layer, every other
layer frozen). The boosted validation-accuracy curve of a snapshot taken at
epoch s occupies epochs s+1 .. s+16 of the same epoch axis as the normal
training, so the two can be compared at equal epoch counts. The thesis's
axis is training time: wall and CPU seconds per epoch are recorded too,
since boosting epochs back-propagate through one layer only and are cheaper,
and a second figure plots the curves against CPU time.

Scale of the `cpu` preset (`_conv.CPU_SCALE`): a stratified subset of
10,000 training images (9,000 train / 1,000 validation; 2,000 test),
convolutions in bfloat16, 30 epochs of normal training and snapshots at
epochs 2, 5, 9 and 14, each boosted for 4 x 4 epochs (64 boosting epochs,
each cheaper than a normal one). Normal training runs to the last snapshot
+ 16 epochs so every boosted curve has a normal-training counterpart.
Cost per seed, one thread: 14-16 CPU-minutes (recorded: 839-957 CPU-s,
16-22 min wall beside another run). The `paper` preset uses the full data, the
thesis's snapshot epochs and 125 epochs of normal training (the thesis does
not state the total; its last boosted curve ends at epoch 107 + 16 = 123).

Test-friendly override of the `paper` preset (one step on generated data):
`{"dataset": "synthetic", "epochs": 2, "snapshot_epochs": (1,), "boost_layers": 1, "boost_epochs": 1}`.
"""

import dataclasses

from supernet_lab.experiments._common import by_preset, bn_momentum_notes
from supernet_lab.experiments._conv import CPU_SCALE, BoostConfig, data_notes, report_boost, smoke, train_and_boost_snapshots
from supernet_lab.findings import Claim

NAME = "fig4_snapshot_boost"
DESCRIPTION = "Snapshots of a Table-2 CNN boosted layer by layer (last 4 layers x 4 epochs) vs continued training"
REPRODUCES = "thesis Fig. 4"

THESIS_SNAPSHOT_EPOCHS = (4, 19, 70, 107)


@dataclasses.dataclass(frozen=True)
class Config(BoostConfig):
    epochs: int = 125
    snapshot_epochs: tuple = THESIS_SNAPSHOT_EPOCHS


CPU_SNAPSHOT_EPOCHS = (2, 5, 9, 14)

PRESETS = {
    # The `cpu` snapshots, which the claims read. Normal training runs on well
    # past the last boost's CPU time (mostly its stages' tracing), as in `cpu`.
    "smoke": Config(**smoke(120, 40), epochs=30, snapshot_epochs=CPU_SNAPSHOT_EPOCHS, boost_layers=2, boost_epochs=1),
    "cpu": Config(**CPU_SCALE, epochs=30, snapshot_epochs=CPU_SNAPSHOT_EPOCHS),
    "paper": Config(),
}
# The boosted snapshots are stored by snapshot epoch, and `paper` snapshots at
# other epochs than `cpu`: the claims read the `cpu` snapshots, which `smoke`
# takes too (a `paper` run has none of these keys and no findings).
# Validation accuracy, as in the figure; paired within a seed.
_POINTS = dict(scale=100, unit=" points")


def _snapshot(epoch, field):
    """Dotted path of one field of the boosted epoch-`epoch` snapshot."""
    return f"metrics.snapshots.{epoch}.{field}"


CLAIMS = tuple(
    Claim(
        f"boost_{kind}_epoch{epoch}", text, "thesis section 3.1, Fig. 4",
        _snapshot(epoch, "final_val"), minus=_snapshot(epoch, baseline), label=label.format(epoch=epoch), **_POINTS,
    )
    for kind, baseline, text, label in (
        (
            "beats_normal", "normal_val_same_epoch",
            "Retraining the last layers one at a time is a quick accuracy boost: the boosted snapshot beats continued "
            "normal training at the same epoch.",
            "boosted epoch-{epoch} snapshot - normal training at the same epoch, val accuracy",
        ),
        (
            "beats_normal_cpu_time", "normal_val_same_cpu_time",
            "Retraining the last layers one at a time is a quick accuracy boost, on the figure's axis of training "
            "time: the boosted snapshot beats normal training given the same CPU time.",
            "boosted epoch-{epoch} snapshot - normal training at the boost's end CPU time, val accuracy",
        ),
        (
            "raises", "snapshot_val",
            "'Freezing' all layers except the last ones can be used as a quick accuracy boost: boosting a snapshot "
            "raises its accuracy.",
            "boosted - unboosted epoch-{epoch} snapshot, val accuracy",
        ),
    )
    for epoch in CPU_SNAPSHOT_EPOCHS
) + (
    Claim(
        f"gain_decreases_epoch{CPU_SNAPSHOT_EPOCHS[0]}_vs_{CPU_SNAPSHOT_EPOCHS[-1]}",
        "The additional accuracy gain is slowly decreasing over the training time: the first snapshot gains more from "
        "the boost than the last.",
        "thesis section 3.1, Fig. 4",
        _snapshot(CPU_SNAPSHOT_EPOCHS[0], "gain"), minus=_snapshot(CPU_SNAPSHOT_EPOCHS[-1], "gain"),
        label=f"boost gain of the epoch-{CPU_SNAPSHOT_EPOCHS[0]} - of the epoch-{CPU_SNAPSHOT_EPOCHS[-1]} snapshot, "
        "val accuracy",
        **_POINTS,
    ),
)


# === Experiment ===


def main(config, context):
    result, _, _ = train_and_boost_snapshots(config, context)
    return result


# === Report ===


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        written += report_boost(
            runs,
            out_dir / NAME,
            name=NAME,
            title=f"Fig. 4: layer-by-layer boost of Table-2 CNN snapshots vs continued training ({runs.preset})",
            source="thesis section 3.1, Fig. 4 (curves only, no numbers)",
            footnotes=_footnotes(runs.config),
        )
    return written


def _footnotes(cfg):
    notes = bn_momentum_notes(cfg) + data_notes(cfg)
    if tuple(cfg["snapshot_epochs"]) != THESIS_SNAPSHOT_EPOCHS:
        notes.append(f"Snapshots at epochs {tuple(cfg['snapshot_epochs'])} of {cfg['epochs']} (thesis: {THESIS_SNAPSHOT_EPOCHS}).")
    if (cfg["boost_layers"], cfg["boost_epochs"]) != (4, 4):
        notes.append(f"Boost: last {cfg['boost_layers']} layers x {cfg['boost_epochs']} epochs (thesis: 4 x 4).")
    notes.append(
        f"Adam lr {cfg['learning_rate']} (boost stages: fresh Adam lr {cfg['boost_learning_rate']}), batch {cfg['batch_size']}, "
        "no data augmentation, total normal-training epochs: not stated in the thesis."
    )
    notes.append(
        "The figure's x-axis is the epoch; the `_time` figure plots the same curves against training time, the thesis's "
        "axis (CPU seconds where recorded, otherwise wall seconds); wall seconds are in the last column."
    )
    return notes


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
