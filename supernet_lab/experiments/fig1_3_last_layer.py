"""Thesis Figs. 1-3: training only the last layer, against training on, and its effect on the class clusters.

Protocol (thesis section 3.1). Fig. 1: a CNN is trained normally on
CIFAR-10 with Adam and snapshotted (thesis: epochs 18, 30, 50 and 70 of
about 80); from each snapshot, only the last (softmax) layer is trained on
(`supernet.callbacks.retrain_last_layers` with one layer, fresh Adam, every
other layer frozen), and the curves are compared on the CPU-time axis, where
a last-layer epoch is cheaper than a normal one. Figs. 2-3: the fully
trained net's test-set outputs of the penultimate layer (Fig. 2) and its
predictions before and after re-training its last layer (Fig. 3) are mapped
to 2-D with t-SNE and scored by 5-NN accuracy (thesis: 0.906 -> 0.912).

The thesis used a DenseNet; the Table-2 CNN (`supernet.models.thesis_cnn`)
stands in, as in Table 3 and Fig. 4. The length of a last-layer run is not
stated; we train it `boost_epochs` = 4 epochs (one stage of Fig. 4's boost).

Scale of the `cpu` preset: the same data and net as `fig4_snapshot_boost`'s
(`_conv.CPU_SCALE`: 9,000 train / 1,000 validation / 2,000 test CIFAR-10
images, bfloat16 convolutions, 30 epochs), snapshots at the thesis's epochs
scaled to 30 (7, 11, 19, 26), 4 last-layer epochs each (cheaper than a
normal epoch), 4 more for Fig. 3 and three t-SNE maps of the 2,000 test
images. Cost per seed, one thread: 11-14 CPU-minutes (recorded: 648-848
CPU-s, 13-20 min wall beside one or two other runs).
The `paper` preset trains 80 epochs on the full data, snapshots at the
thesis's epochs, t-SNE on the whole test set.

Test-friendly override of the `paper` preset (one step on generated data):
`{"dataset": "synthetic", "epochs": 2, "snapshot_epochs": (1,), "boost_epochs": 1, "tsne_points": 60}`.
"""

import dataclasses

import keras

from supernet_lab.experiments._common import by_preset, bn_momentum_notes
from supernet_lab.experiments._conv import (
    CPU_SCALE, BoostConfig, boost, data_notes, predict, report_boost, smoke, train_and_boost_snapshots,
)
from supernet_lab.findings import Claim
from supernet import reports

NAME = "fig1_3_last_layer"
DESCRIPTION = "Snapshots of a Table-2 CNN with only the last layer trained on, on the CPU-time axis; t-SNE maps before/after"
REPRODUCES = "thesis Figs. 1-3"

THESIS_SNAPSHOT_EPOCHS = (18, 30, 50, 70)
THESIS_KNN = {"predictions_before": 0.906, "predictions_after": 0.912}


@dataclasses.dataclass(frozen=True)
class Config(BoostConfig):
    epochs: int = 80
    snapshot_epochs: tuple = THESIS_SNAPSHOT_EPOCHS
    # Fig. 1 trains only the last layer of each snapshot.
    boost_layers: int = 1
    tsne_points: int = 10_000
    knn_k: int = 5


CPU_SNAPSHOT_EPOCHS = (7, 11, 19, 26)

PRESETS = {
    # The `cpu` snapshots, which the claims read.
    "smoke": Config(**smoke(120, 40), epochs=30, snapshot_epochs=CPU_SNAPSHOT_EPOCHS, boost_epochs=1, tsne_points=40),
    "cpu": Config(**CPU_SCALE, epochs=30, snapshot_epochs=CPU_SNAPSHOT_EPOCHS, tsne_points=2000),
    "paper": Config(),
}

_POINTS = dict(scale=100, unit=" points")
_SECOND, _THIRD = CPU_SNAPSHOT_EPOCHS[1], CPU_SNAPSHOT_EPOCHS[2]


def _snapshot(epoch, field):
    """Dotted path of one field of the epoch-`epoch` snapshot trained on in its last layer."""
    return f"metrics.snapshots.{epoch}.{field}"


CLAIMS = (
    Claim(
        "second_boost_beats_normal_same_cpu_time",
        "The second gain replicates the score that was achieved by full network training more than 5h later.",
        "thesis section 3.1, Fig. 1",
        _snapshot(_SECOND, "final_val"), minus=_snapshot(_SECOND, "normal_val_same_cpu_time"),
        label=f"epoch-{_SECOND} snapshot, last layer trained on - normal training at the same CPU time, val accuracy",
        **_POINTS,
    ),
    Claim(
        "third_boost_not_surpassed",
        "The accuracy achieved by the additional boost at 12th hour of training did not improve within the whole "
        "20 hours of training.",
        "thesis section 3.1, Fig. 1",
        _snapshot(_THIRD, "final_val"), minus="metrics.normal.best_val",
        label=f"epoch-{_THIRD} snapshot, last layer trained on - best epoch of the whole normal training, val accuracy",
        **_POINTS,
    ),
    Claim(
        "last_layer_concentrates_clusters",
        "After the train, the clusters seem to be more concentrated, which confirms the improving properties of this "
        "method.",
        "thesis section 3.1, Fig. 3",
        "metrics.knn.predictions_after", minus="metrics.knn.predictions_before",
        source_value=round(THESIS_KNN["predictions_after"] - THESIS_KNN["predictions_before"], 6),
        label="5-NN accuracy of the t-SNE map of the test predictions, after - before training the last layer",
    ),
)


# === Experiment ===


def _embeddings(model, ds, config, context):
    """Figs. 2-3: t-SNE maps of the trained net's test outputs, its last layer then trained on; 5-NN of each."""
    folder = context.out_dir / NAME
    stem = f"{NAME}_{context.preset}_seed{config.seed}"
    penultimate = keras.Model(model.inputs, model.layers[-1].input)
    outputs = {"penultimate": predict(penultimate, ds.x_test), "predictions_before": predict(model, ds.x_test)}
    retrained = boost(model, ds, config)
    outputs["predictions_after"] = predict(model, ds.x_test)
    knn = {}
    for kind, title in (
        ("penultimate", "penultimate layer (thesis Fig. 2)"),
        ("predictions_before", "predictions (thesis Fig. 3, before)"),
        ("predictions_after", "predictions after training the last layer (thesis Fig. 3, after)"),
    ):
        knn[kind] = reports.plot_embedding(
            outputs[kind], ds.y_test, folder / f"{stem}_tsne_{kind}.png", title=title,
            seed=config.seed, k=config.knn_k, max_points=config.tsne_points,
        )
        context.log(f"  t-SNE {kind}: {config.knn_k}-NN accuracy {knn[kind]:.3f}")
    return knn, {"val_curve": retrained["val_curve"], "test_accuracy": retrained["test_accuracy"]}


def main(config, context):
    result, model, ds = train_and_boost_snapshots(config, context)
    with context.stage("tsne"):
        result["knn"], result["final_last_layer"] = _embeddings(model, ds, config, context)
    return result


# === Report ===


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        written += report_boost(
            runs,
            out_dir / NAME,
            name=NAME,
            title=f"Fig. 1: only the last layer of Table-2 CNN snapshots trained on, vs continued training ({runs.preset})",
            source="thesis section 3.1, Fig. 1 (curves only, no numbers)",
            footnotes=_footnotes(runs.config),
        )
        knn = reports.Table(
            title=f"Figs. 2-3: {runs.config['knn_k']}-NN accuracy of t-SNE maps of the trained net's test outputs ({runs.preset})",
            columns=["map", "ours", "thesis"],
            rows=[
                ["penultimate layer (Fig. 2)", runs.cell("metrics.knn.penultimate", digits=3), "—"],
                ["predictions, before training the last layer (Fig. 3)", runs.cell("metrics.knn.predictions_before", digits=3),
                 f"{THESIS_KNN['predictions_before']:g}"],
                ["predictions, after (Fig. 3)", runs.cell("metrics.knn.predictions_after", digits=3),
                 f"{THESIS_KNN['predictions_after']:g}"],
            ],
            caption=(
                f"Preset `{runs.preset}`, mean ± std over {runs.n} seed(s). The net after its "
                f"{runs.config['epochs']} normal epochs, then its last layer alone trained {runs.config['boost_epochs']} "
                f"epochs: test accuracy {runs.cell('metrics.normal.final_test_accuracy', 100)}% -> "
                f"{runs.cell('metrics.final_last_layer.test_accuracy', 100)}%. t-SNE (2-D, PCA init) of at most "
                f"{runs.config['tsne_points']} test images; the maps are PNGs written during the run. The claims "
                "table judges Fig. 3's claim over the seeds."
            ),
            source="thesis Figs. 2-3 (5-NN 0.906 -> 0.912)",
            footnotes=[
                "The thesis mapped the outputs of a DenseNet at 93.62% test accuracy; ours come from the Table-2 CNN "
                "at the preset's scale.",
            ],
        )
        written += reports.write_table(knn, out_dir / NAME / f"{NAME}_{runs.preset}_knn")
    return written


def _footnotes(cfg):
    notes = bn_momentum_notes(cfg) + data_notes(cfg)
    if tuple(cfg["snapshot_epochs"]) != THESIS_SNAPSHOT_EPOCHS:
        notes.append(f"Snapshots at epochs {tuple(cfg['snapshot_epochs'])} of {cfg['epochs']} "
                     f"(thesis: {THESIS_SNAPSHOT_EPOCHS} of about 80).")
    notes.append(
        f"Only the last (softmax) layer trained on, {cfg['boost_epochs']} epochs (thesis: length not stated), fresh Adam "
        f"lr {cfg['boost_learning_rate']}; normal training Adam lr {cfg['learning_rate']}, batch {cfg['batch_size']}, "
        "no data augmentation. Table-2 CNN instead of the thesis's DenseNet."
    )
    notes.append(
        "The figure's x-axis is the epoch; the `_time` figure plots the curves against CPU seconds, the thesis's axis, "
        "and 'normal training at the boost's end CPU time' reads the normal run at its last epoch finished by then."
    )
    return notes


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
