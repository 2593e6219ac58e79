"""Thesis Table 7 and Figs. 11-15: SuperModels from early vs late (overconfident) snapshots.

Reproduces section 3.4 ("Best submodels"). Six 40-60-60-10 MLPs are trained
on Fashion-MNIST without regularisation as one fused `PartitionedMLP`; the
fused weights are kept at three snapshot epochs (thesis: 20, 40, 60). At
each snapshot a SuperModel is built (copied head, mean bias, not
down-scaled) and its head re-trained; we record its validation and test
accuracy (Fig. 11: member and SuperModel curves). Table 7: the last layer of
one member's first and last snapshot is re-trained alone (a 1-member
SuperNet with a random head and L2 0.01, `fit_head`), validation accuracy
and loss before/after. Figs. 14/15: t-SNE maps of that member's outputs and
penultimate activations on a stratified subsample of the validation set,
with their 5-NN accuracy. Figs. 12/13: per-sample loss histograms (stored
as counts over fixed log-spaced bins).

Figures: the curves (Fig. 11) and loss histograms (Figs. 12/13) are redrawn
by `report` from the records. The t-SNE maps (Figs. 14/15) are drawn during
`main`, under `<out>/table7_best_submodels/`, because storing the 2-D
coordinates would bloat the records; `report` only re-renders their 5-NN
numbers in a table.

Presets:
- `smoke`: synthetic 784-dim data, tiny members, 2 epochs (snapshots 1/2).
- `cpu`: the full 54k/6k/10k Fashion-MNIST split, thesis architecture, 18
  epochs with snapshots at 6/12/18 (thesis 20/40/60 scaled by 0.3).
  Measured on this machine (2 shared cores, under load): one epoch of the
  fused 6 x 40-60-60 model 5.6 s wall / 4.0 s CPU; with three SuperModel
  heads, two re-trainings and four t-SNE maps of 1500 points one seed is
  ~3.5 min.
- `paper`: 60 epochs, snapshots 20/40/60: 160-360 CPU-seconds per seed as
  recorded (3-10 minutes wall, one thread, beside one to three other runs;
  the cheaper seeds ran on a faster host).
"""

import dataclasses

import keras
import numpy as np

from supernet_lab.experiments._beyond import member_probs
from supernet_lab.experiments._common import (
    SMOKE_FMNIST, MembersConfig, by_preset, load_dataset, loss_edges, loss_histogram, losses_from_histogram,
)
from supernet import reports, training
from supernet.models import PartitionedMLP, build_supernet, fit_head
from supernet.training import scores
from supernet_lab.findings import Claim

NAME = "table7_best_submodels"
DESCRIPTION = "SuperModels from epoch 20/40/60 snapshots; last-layer re-training and t-SNE of early vs late models"
REPRODUCES = "thesis Table 7, Figs. 11-15"

# Thesis Table 7: (val acc, val loss) before and after re-training the last layer.
THESIS_TABLE7 = {
    "first": {"before": (0.8954, 0.396), "after": (0.8961, 0.3765)},
    "last": {"before": (0.886, 0.682), "after": (0.8994, 0.4175)},
}
# Thesis Figs. 14/15: 5-NN accuracy of the t-SNE maps (epoch 20, epoch 60).
THESIS_KNN = {"output": {"first": 0.846, "last": 0.829}, "penultimate": {"first": 0.866, "last": 0.867}}


@dataclasses.dataclass(frozen=True)
class Config(MembersConfig):
    """Six unregularised members (`MembersConfig`), their snapshots, SuperModels, re-trained last layers and t-SNE maps."""

    hidden_units: tuple = (40, 60, 60)
    dropout: float = 0.0
    l2: float = 0.0
    epochs: int = 60
    snapshots: tuple = (20, 40, 60)
    head_epochs: int = 10
    head_downscale: object = 1.0
    member_index: int = 0
    retrain_epochs: int = 10
    retrain_l2: float = 0.01
    tsne_points: int = 1500
    knn_k: int = 5
    loss_hist_min: float = 1e-8
    loss_hist_max: float = 100.0
    loss_hist_bins: int = 100


PRESETS = {
    "smoke": Config(
        # SMOKE_FMNIST with 500 training and 100 test examples.
        **dict(SMOKE_FMNIST, dataset_kwargs=tuple(dict(SMOKE_FMNIST["dataset_kwargs"], num_train=500, num_test=100).items())),
        hidden_units=(8, 12, 12), epochs=2, snapshots=(1, 2), head_epochs=1, retrain_epochs=1, tsne_points=60,
    ),
    "cpu": Config(epochs=18, snapshots=(6, 12, 18)),
    "paper": Config(),
}

# The thesis's claims for Table 7 and Figs. 14/15, each a paired comparison
# within one run: one member's first ("epoch 20") and last ("epoch 60")
# snapshot, before and after re-training its last layer, on the validation
# set. Fig. 11's claim (the SuperModel of the latest snapshot scores highest)
# reads metrics keyed by the snapshot epochs, which differ between presets, so
# it is not declared here.
_POINTS = dict(scale=100, unit=" points")


def _retrain(claim_id, text, first, second, metric, label, compare=">"):
    """Claim that `metric` of `first` minus that of `second` (each `(snapshot, "before"/"after")`) is `compare` 0.

    The thesis's difference of the same Table 7 cells is its source value.
    """
    column = ("accuracy", "nll").index(metric)
    return Claim(
        claim_id, text, "thesis section 3.4, Table 7", ".".join(("metrics.retrain", *first, metric)), compare=compare,
        minus=".".join(("metrics.retrain", *second, metric)),
        source_value=round(THESIS_TABLE7[first[0]][first[1]][column] - THESIS_TABLE7[second[0]][second[1]][column], 6),
        label=label, **(_POINTS if metric == "accuracy" else {}),
    )


_LATE_ACCURACY = "Model from 60th epoch with re-trained last layer should end up with slightly better accuracy"
CLAIMS = (
    _retrain(
        "late_snapshot_higher_loss",
        "The base models are getting overfitted, as the accuracy is stable, but loss slowly increases.",
        ("last", "before"), ("first", "before"), "nll", "late - early snapshot, val loss before re-training",
    ),
    _retrain(
        "retraining_lowers_late_loss",
        "The high error of the 60th epoch's model is generated mostly by its final layer.",
        ("last", "after"), ("last", "before"), "nll", "late snapshot, after - before re-training the last layer, val loss",
        compare="<",
    ),
    _retrain(
        "retraining_raises_late_accuracy", f"{_LATE_ACCURACY}. We confirm such results in Table 7.",
        ("last", "after"), ("last", "before"), "accuracy",
        "late snapshot, after - before re-training the last layer, val accuracy",
    ),
    _retrain(
        "late_beats_early_after_retraining", f"{_LATE_ACCURACY} [than the 20th epoch's].",
        ("last", "after"), ("first", "after"), "accuracy", "late - early snapshot, val accuracy after re-training the last layer",
    ),
    Claim(
        "early_output_map_separates_better",
        "The 5-nn metric for last layer embedding was bigger for the model with lower loss (0.846 and 0.829).",
        "thesis section 3.4, Fig. 14",
        "metrics.knn.output.first", minus="metrics.knn.output.last",
        source_value=round(THESIS_KNN["output"]["first"] - THESIS_KNN["output"]["last"], 6),
        label="early - late snapshot, 5-NN accuracy of the t-SNE map of the outputs", **_POINTS,
    ),
    # "Similar" as two one-sided claims: the difference lies within +-1 point.
    *(
        Claim(
            f"penultimate_maps_alike_{side}",
            "The outputs from penultimate layers had a similar metric, equal 0.866.",
            "thesis section 3.4, Fig. 15",
            "metrics.knn.penultimate.first", compare=compare, threshold=threshold, minus="metrics.knn.penultimate.last",
            source_value=round(THESIS_KNN["penultimate"]["first"] - THESIS_KNN["penultimate"]["last"], 6),
            label="early - late snapshot, 5-NN accuracy of the t-SNE map of the penultimate layer", **_POINTS,
        )
        for side, compare, threshold in (("above", ">", -0.01), ("below", "<", 0.01))
    ),
)


class _SnapshotsAndCurves(keras.callbacks.Callback):
    """Per-member validation curves every epoch and the fused weights at snapshot epochs."""

    def __init__(self, validation_data, snapshots):
        super().__init__()
        self.validation_data, self.snapshots = validation_data, tuple(snapshots)

    def on_train_begin(self, logs=None):
        self.weights, self.curves = {}, {"val_accuracy": [], "val_nll": []}

    def on_epoch_end(self, epoch, logs=None):
        x, y = self.validation_data
        member_scores = [scores(y, p) for p in member_probs(self.model, x)]
        for metric in ("accuracy", "nll"):
            self.curves[f"val_{metric}"].append([s[metric] for s in member_scores])
        if epoch + 1 in self.snapshots:
            self.weights[epoch + 1] = [np.array(w, copy=True) for w in self.model.get_weights()]


def _predict(model, x):
    return model.predict(x, verbose=0, batch_size=1024)


def main(config, context):
    ds = load_dataset(config)
    context.log(ds.summary())
    edges = loss_edges(config)

    def fused():
        return PartitionedMLP(
            ds.input_shape[0], list(config.hidden_units), ds.num_classes,
            num_members=config.num_members, dropout=config.dropout, l2=config.l2, seed=config.seed,
        )

    with context.stage("train_members"):
        model = fused()
        tracker = _SnapshotsAndCurves((ds.x_val, ds.y_val), config.snapshots)
        training.fit_members(
            model, ds, epochs=config.epochs, batch_size=config.batch_size,
            learning_rate=config.learning_rate, callbacks=[tracker], log=context.log,
        )
    snapshot_epochs = sorted(tracker.weights)
    first, last = snapshot_epochs[0], snapshot_epochs[-1]
    curves = {f"member_{key}": np.asarray(values).T.tolist() for key, values in tracker.curves.items()}

    supermodels, snapshot_members, hist = {}, {}, {}
    with context.stage("supermodels"):
        for epoch in snapshot_epochs:
            snap = fused()
            snap.set_weights(tracker.weights[epoch])
            snapshot_members[epoch] = snap.member(config.member_index)
            supernet, result = training.supermodel(
                snap, ds, init="copy", downscale=config.head_downscale, head_epochs=config.head_epochs,
                batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed,
            )
            val_probs = _predict(supernet, ds.x_val)
            members_val = np.asarray(tracker.curves["val_accuracy"][epoch - 1])
            supermodels[f"epoch_{epoch}"] = {
                "epoch": epoch,
                "val": scores(ds.y_val, val_probs),
                "test": result["after"],
                "copied_head_test": result["before"],
                "member_val_accuracy_avg": float(members_val.mean()),
                "member_val_accuracy_best": float(members_val.max()),
                "head_history": result["history"],
            }
            if epoch == last:
                hist["supermodel_last"] = loss_histogram(ds.y_val, val_probs, edges)
            context.log(
                f"  SuperModel @ epoch {epoch}: val acc {supermodels[f'epoch_{epoch}']['val']['accuracy']:.4f}, "
                f"test acc {result['after']['accuracy']:.4f} (members avg val {members_val.mean():.4f})"
            )

    retrain = {}
    with context.stage("retrain_last_layer"):
        for key, epoch in (("first", first), ("last", last)):
            member = snapshot_members[epoch]
            before = _predict(member, ds.x_val)
            hist[f"member_{key}"] = loss_histogram(ds.y_val, before, edges)
            single = build_supernet([member], init="random", l2=config.retrain_l2, seed=config.seed)
            fit_head(
                single, ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val),
                epochs=config.retrain_epochs, batch_size=config.batch_size,
                optimizer=keras.optimizers.Adam(config.learning_rate), verbose=0,
            )
            retrain[key] = {
                "epoch": epoch,
                "before": scores(ds.y_val, before),
                "after": scores(ds.y_val, _predict(single, ds.x_val)),
                "after_test": scores(ds.y_test, _predict(single, ds.x_test)),
            }
            before, after = retrain[key]["before"], retrain[key]["after"]
            context.log(
                f"  member {config.member_index + 1} @ epoch {epoch}: val acc {before['accuracy']:.4f} "
                f"-> {after['accuracy']:.4f}, val NLL {before['nll']:.4f} -> {after['nll']:.4f}"
            )

    knn = {"output": {}, "penultimate": {}}
    with context.stage("tsne"):
        for key, epoch in (("first", first), ("last", last)):
            member = snapshot_members[epoch]
            activations = {
                "output": _predict(member, ds.x_val),
                "penultimate": _predict(keras.Model(member.inputs, member.layers[-1].input), ds.x_val),
            }
            for kind, acts in activations.items():
                knn[kind][key] = reports.plot_embedding(
                    acts, ds.y_val,
                    context.out_dir / NAME / f"{NAME}_{context.preset}_seed{config.seed}_tsne_{kind}_epoch{epoch}.png",
                    title=f"member {config.member_index + 1}, epoch {epoch}, {kind} (thesis Fig. {14 if kind == 'output' else 15})",
                    seed=config.seed, k=config.knn_k, max_points=config.tsne_points,
                )
                context.log(f"  t-SNE {kind} @ epoch {epoch}: {config.knn_k}-NN accuracy {knn[kind][key]:.3f}")

    return {
        "snapshot_epochs": snapshot_epochs,
        "curves": curves,
        "supermodels": supermodels,
        "retrain": retrain,
        "knn": knn,
        "loss_hist_edges": edges.tolist(),
        "loss_hist": hist,
    }


def report(records, out_dir):
    """Table 7, SuperModel-per-snapshot and 5-NN tables; Fig. 11 curves and Figs. 12/13 histograms."""
    written = []
    for runs in by_preset(records):
        config, preset, n, mean = runs.config, runs.preset, runs.n, runs.mean
        stem = out_dir / NAME / f"{NAME}_{preset}"
        epochs = runs.runs[-1]["metrics"]["snapshot_epochs"]
        snapshots = {"first": epochs[0], "last": epochs[-1]}
        member = config["member_index"] + 1

        def cell(path, digits=4):
            return runs.cell(path, digits=digits)

        rows = []
        for key, thesis_epoch in (("first", 20), ("last", 60)):
            row = [f"epoch {snapshots[key]} model (thesis: epoch {thesis_epoch})"]
            for when in ("before", "after"):
                for i, m in enumerate(("accuracy", "nll")):
                    row += [cell(f"metrics.retrain.{key}.{when}.{m}"), f"{THESIS_TABLE7[key][when][i]:g}"]
            rows.append(row)
        gain = {k: mean(f"metrics.retrain.{k}.after.accuracy") - mean(f"metrics.retrain.{k}.before.accuracy")
                for k in ("first", "last")}
        thesis_gain = {k: THESIS_TABLE7[k]["after"][0] - THESIS_TABLE7[k]["before"][0] for k in ("first", "last")}
        scaled = [] if list(epochs) == [20, 40, 60] else [
            f"Snapshots at epochs {', '.join(map(str, epochs))} of {config['epochs']} instead of 20, 40, 60 of 60 (epoch "
            "budget of this preset)."
        ]
        written += reports.write_table(
            reports.Table(
                title=f"Table 7: re-training only the last layer of member {member}'s early and late snapshot ({preset})",
                columns=["snapshot", "before: val acc", "thesis", "before: val loss", "thesis", "after: val acc", "thesis",
                         "after: val loss", "thesis"],
                rows=rows,
                caption=(
                    f"Preset `{preset}`, mean ± std over {n} seed(s). Re-training the last layer moved the validation "
                    f"accuracy by {gain['last']:+.4f} (late snapshot) and {gain['first']:+.4f} (early; thesis "
                    f"{thesis_gain['last']:+.4f} and {thesis_gain['first']:+.4f}); the claims table beside this one judges "
                    "the thesis's claims over the seeds."
                ),
                source="thesis Table 7",
                footnotes=scaled + [
                    "Loss = pure validation cross-entropy (the thesis's Keras val_loss after re-training probably included "
                    "the L2 penalty).",
                    f"Last layer re-trained {config['retrain_epochs']} epochs (thesis: not stated), random Glorot init, L2 "
                    f"{config['retrain_l2']:g}, Adam lr {config['learning_rate']}, batch {config['batch_size']}; scores "
                    "after the last epoch.",
                ],
            ),
            stem,
        )

        snapshot_columns = ("member_val_accuracy_avg", "member_val_accuracy_best", "val.accuracy", "val.nll",
                            "copied_head_test.accuracy", "test.accuracy")
        written += reports.write_table(
            reports.Table(
                title=f"Fig. 11 (numbers): SuperModel built at each snapshot ({preset})",
                columns=["snapshot", "members: avg val acc", "members: best val acc", "SuperModel val acc",
                         "SuperModel val loss", "copied head test acc", "SuperModel test acc"],
                rows=[[f"epoch {e}"] + [cell(f"metrics.supermodels.epoch_{e}.{c}") for c in snapshot_columns] for e in epochs],
                caption=(
                    f"Preset `{preset}`, mean ± std over {n} seed(s); {config['num_members']} x "
                    f"{'-'.join(map(str, config['hidden_units']))}-10, no regularisation; head copied (f = "
                    f"{config['head_downscale']}) and re-trained {config['head_epochs']} epochs. Thesis (Fig. 11): the "
                    "SuperModel from the latest snapshot has the highest accuracy. Members: wall "
                    f"{cell('timings.train_members.wall_s', 1)} s, CPU {cell('timings.train_members.cpu_s', 1)} s."
                ),
                source="thesis Fig. 11 (figure only, no numbers)",
                footnotes=scaled,
            ),
            stem.with_name(f"{stem.name}_supermodels"),
        )

        early_minus_late = {kind: mean(f"metrics.knn.{kind}.first") - mean(f"metrics.knn.{kind}.last") for kind in THESIS_KNN}
        thesis_minus = {kind: THESIS_KNN[kind]["first"] - THESIS_KNN[kind]["last"] for kind in THESIS_KNN}
        written += reports.write_table(
            reports.Table(
                title=f"Figs. 14-15: {config['knn_k']}-NN accuracy of t-SNE maps of member {member} ({preset})",
                columns=["activations", f"epoch {epochs[0]}", "thesis (epoch 20)", f"epoch {epochs[-1]}", "thesis (epoch 60)"],
                rows=[
                    [f"{kind} (Fig. {fig})"]
                    + [c for key in ("first", "last") for c in (cell(f"metrics.knn.{kind}.{key}", 3), f"{THESIS_KNN[kind][key]:g}")]
                    for kind, fig in (("output", 14), ("penultimate", 15))
                ],
                caption=(
                    f"Preset `{preset}`, mean ± std over {n} seed(s); t-SNE of a stratified subsample of "
                    f"{config['tsne_points']} validation examples (maps are PNGs written during the run). Early minus "
                    f"late snapshot: output map {early_minus_late['output']:+.3f}, penultimate map "
                    f"{early_minus_late['penultimate']:+.3f} (thesis {thesis_minus['output']:+.3f} and "
                    f"{thesis_minus['penultimate']:+.3f}); the claims table beside this one judges them over the seeds."
                ),
                source="thesis Figs. 14 and 15 captions",
                footnotes=[f"t-SNE on {config['tsne_points']} validation examples (the thesis used the whole validation set)."],
            ),
            stem.with_name(f"{stem.name}_knn"),
        )

        first = min(runs.runs, key=lambda r: r["seed"])
        metrics_ = first["metrics"]
        labels = [f"member {k + 1}" for k in range(config["num_members"])]
        for metric, field in (("val_accuracy", "accuracy"), ("val_loss", "nll")):
            written.append(reports.plot_curves(
                {name: {metric: values} for name, values in zip(labels, metrics_["curves"][f"member_val_{field}"])},
                metric, stem.with_name(f"{stem.name}_fig11_{metric}.png"),
                title=f"Members and SuperModels, seed {first['seed']} (thesis Fig. 11)",
                markers={f"SuperModel @ {e}": (e, metrics_["supermodels"][f"epoch_{e}"]["val"][field]) for e in epochs},
            ))
        hist, edges = metrics_["loss_hist"], metrics_["loss_hist_edges"]
        written.append(reports.plot_loss_histogram(
            {f"member {member}, epoch {epochs[0]}": losses_from_histogram(hist["member_first"], edges),
             f"member {member}, epoch {epochs[-1]}": losses_from_histogram(hist["member_last"], edges),
             f"SuperModel, epoch {epochs[-1]}": losses_from_histogram(hist["supermodel_last"], edges)},
            stem.with_name(f"{stem.name}_fig12_13_loss_histogram.png"),
            title=f"Per-sample validation loss, seed {first['seed']} (thesis Figs. 12-13)",
        ))
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
