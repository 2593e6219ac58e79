"""Conv-net orchestration shared by the CIFAR experiment modules.

Training a Keras CNN with weight snapshots at chosen epochs, scoring members,
voting and a SuperNet of them, boosting snapshots layer by layer (thesis
Figs. 4 and 5), stopping an FGE run at its last snapshot, and the table and
figure of a snapshot-boost experiment.
"""

import time

import keras
import numpy as np

from supernet_lab.experiments._common import verdict
from supernet import metrics, reports
from supernet._validation import check_converged
from supernet.callbacks import retrain_last_layers
from supernet.models import build_supernet, fit_head
from supernet.training import epoch_logger

# Rows of a voting-vs-SuperNet table: (key in `ensemble_rows`, label).
ENSEMBLE_METHODS = (("best_member", "best single net"), ("majority", "majority voting"), ("softmax", "softmax voting"), ("supernet", "SuperNet"))


# === Training with snapshots ===


OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "nadam": keras.optimizers.Nadam,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "sgd": keras.optimizers.SGD,
}


def make_optimizer(name, learning_rate):
    """A fresh Keras optimizer by name (a key of `OPTIMIZERS`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}. Known: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate=learning_rate)


def check_snapshots(snapshot_epochs, epochs):
    """Sorted 1-based snapshot epochs; raises if any lies outside `[1, epochs]`."""
    if not snapshot_epochs or any(not 1 <= int(e) <= epochs for e in snapshot_epochs):
        raise ValueError(
            f"Snapshot epochs must be in [1, epochs={epochs}]. Received: snapshot_epochs={snapshot_epochs}"
        )
    return tuple(sorted(int(e) for e in snapshot_epochs))


class SnapshotWeights(keras.callbacks.Callback):
    """Keeps a copy of the model's weights after the given 1-based epochs."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = tuple(epochs)
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.weights[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


def train(model, ds, *, optimizer, epochs, snapshot_epochs=(), batch_size=64, log=None):
    """Compile and fit `model`; returns (per-epoch history, {epoch: weights})."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    snapshots = SnapshotWeights(snapshot_epochs)
    callbacks = [snapshots] + ([epoch_logger(log, epochs, keys=("accuracy", "val_accuracy"))] if log else [])
    callbacks.append(keras.callbacks.TerminateOnNaN())
    history = model.fit(
        ds.x_train,
        ds.y_train,
        validation_data=(ds.x_val, ds.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    check_converged(model, history.history.get("loss", []), f"Model {model.name!r}")
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}, snapshots.weights


def with_weights(model, weights):
    """`model` after `set_weights(weights)`."""
    model.set_weights(weights)
    return model


def predict(model, x):
    """Quiet batched `model.predict`."""
    return model.predict(x, batch_size=512, verbose=0)


def supernet_scores(members, ds, *, downscale, head_epochs, learning_rate, batch_size, seed):
    """Build a SuperNet of `members`, re-train its head, score it on val and test."""
    supernet = build_supernet(
        members,
        init="copy",
        downscale=downscale,
        validation_data=(ds.x_val, ds.y_val) if downscale == "auto" else None,
        seed=seed,
    )
    history = fit_head(
        supernet,
        ds.x_train,
        ds.y_train,
        validation_data=(ds.x_val, ds.y_val),
        epochs=head_epochs,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate),
        verbose=0,
    )
    return {
        "val_accuracy": metrics.accuracy(ds.y_val, predict(supernet, ds.x_val)),
        "test_accuracy": metrics.accuracy(ds.y_test, predict(supernet, ds.x_test)),
        "downscale": float(supernet.supernet_info["downscale"]),
        "head_val_accuracy": [float(v) for v in history.history["val_accuracy"]],
    }


def ensemble_rows(members, ds, *, downscale, head_epochs, learning_rate, batch_size, seed):
    """Members, majority vote, softmax vote and SuperNet on val and test."""
    rows = {}
    probs = {}
    for split in ("val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        probs[split] = np.stack([predict(m, x) for m in members])
        rows.setdefault("members", {str(k + 1): {} for k in range(len(members))})
        for k, p in enumerate(probs[split]):
            rows["members"][str(k + 1)][f"{split}_accuracy"] = metrics.accuracy(y, p)
        rows.setdefault("majority", {})[f"{split}_accuracy"] = float(
            np.mean(metrics.majority_vote(probs[split]) == y)
        )
        rows.setdefault("softmax", {})[f"{split}_accuracy"] = metrics.accuracy(
            y, metrics.softmax_vote(probs[split])
        )
    for split in ("val", "test"):
        accs = [m[f"{split}_accuracy"] for m in rows["members"].values()]
        rows.setdefault("best_member", {})[f"{split}_accuracy"] = float(max(accs))
        rows.setdefault("mean_member", {})[f"{split}_accuracy"] = float(np.mean(accs))
    rows["supernet"] = supernet_scores(
        members,
        ds,
        downscale=downscale,
        head_epochs=head_epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )
    return rows


# === FGE ===


class StopAfterSnapshots(keras.callbacks.Callback):
    """Stops training as soon as `snapshots` holds `count` members."""

    def __init__(self, snapshots, count):
        super().__init__()
        self.snapshots, self.count = snapshots, count

    def on_train_batch_end(self, batch, logs=None):
        if len(self.snapshots.snapshots) >= self.count:
            self.model.stop_training = True


# === Layer-by-layer boost of snapshots (thesis Figs. 4 and 5) ===


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of every epoch, across any number of `fit()` calls."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def boost(model, ds, *, num_layers, epochs, learning_rate, batch_size):
    """Retrain the last `num_layers` layers of `model` one at a time; per-epoch curves."""
    timer = EpochTimer()
    stages = retrain_last_layers(
        model,
        ds.x_train,
        ds.y_train,
        num_layers=num_layers,
        epochs=epochs,
        optimizer_fn=lambda: keras.optimizers.Adam(learning_rate),
        validation_data=(ds.x_val, ds.y_val),
        batch_size=batch_size,
        callbacks=[timer],
        verbose=0,
    )
    curve = [float(v) for s in stages for v in s.history["val_accuracy"]]
    return {
        "val_curve": curve,
        "epoch_seconds": timer.seconds,
        "layers": [s.layer for s in stages],
        "test_accuracy": metrics.accuracy(ds.y_test, model.predict(ds.x_test, batch_size=512, verbose=0)),
    }


def boost_snapshots(build, snapshots, normal_curve, ds, *, num_layers, epochs, learning_rate, batch_size, log):
    """Boost every snapshot; compare with normal training at the same epoch."""
    results = {}
    span = num_layers * epochs
    for epoch in sorted(snapshots):
        model = build()
        model.set_weights(snapshots[epoch])
        boosted = boost(model, ds, num_layers=num_layers, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size)
        end = epoch + span
        boosted.update(
            snapshot_epoch=epoch,
            snapshot_val=normal_curve[epoch - 1],
            final_val=boosted["val_curve"][-1],
            gain=boosted["val_curve"][-1] - normal_curve[epoch - 1],
            normal_val_same_epoch=normal_curve[end - 1] if end <= len(normal_curve) else None,
            normal_best_val_to_same_epoch=max(normal_curve[:end]),
        )
        results[str(epoch)] = boosted
        log(
            f"  snapshot {epoch}: val {boosted['snapshot_val']:.4f} -> boosted {boosted['final_val']:.4f} "
            f"(normal training at epoch {end}: {boosted['normal_val_same_epoch']})"
        )
    return results


def padded_mean(curves, offset):
    """Mean of equal-length curves, preceded by `offset` NaNs (to start at x = offset + 1)."""
    return [float("nan")] * offset + [float(v) for v in np.mean(np.asarray(curves, dtype=float), axis=0)]


# === Report of a snapshot-boost experiment ===


def report_boost(runs, cfg, preset, folder, *, name, title, thesis_snapshots, claim, source, footnotes, prefix="metrics", real_dataset="cifar10"):
    """Table + figure of a snapshot-boost experiment (fig4_snapshot_boost, fig5_18_vgg_cifar100)."""
    epochs = [str(e) for e in reports.get_path(runs[-1], prefix)["snapshots"]]
    span = cfg["boost_layers"] * cfg["boost_epochs"]
    fields = ("snapshot_val", "final_val", "gain", "normal_val_same_epoch", "normal_best_val_to_same_epoch", "test_accuracy")
    paths = [f"{prefix}.snapshots.{e}.{f}" for e in epochs for f in fields]
    paths += [f"{prefix}.normal.best_val", f"{prefix}.normal.final_test_accuracy"]
    group = reports.aggregate(runs, by=["preset"], metrics=paths)[0]
    stats, n = group["metrics"], group["n_runs"]

    def cell(path, scale=100.0, digits=2):
        s = stats[path]
        return reports.format_mean_std(s["mean"], s["std"], s["n"], scale=scale, digits=digits)

    def mean(path):
        return stats[path]["mean"]

    def seconds(run, key, e=None):
        block = reports.get_path(run, prefix)
        if e is None:
            return float(np.mean(block["normal"]["epoch_seconds"]))
        return float(np.sum(block["snapshots"][e]["epoch_seconds"]))

    normal_sec = np.mean([seconds(r, "normal") for r in runs])
    rows = []
    for e in epochs:
        boost_sec = np.mean([seconds(r, "boost", e) for r in runs])
        rows.append(
            [
                e,
                cell(f"{prefix}.snapshots.{e}.snapshot_val"),
                cell(f"{prefix}.snapshots.{e}.final_val"),
                cell(f"{prefix}.snapshots.{e}.normal_val_same_epoch"),
                cell(f"{prefix}.snapshots.{e}.normal_best_val_to_same_epoch"),
                cell(f"{prefix}.snapshots.{e}.gain"),
                f"{boost_sec:.0f} vs {span * normal_sec:.0f}",
            ]
        )
    beats = [
        mean(f"{prefix}.snapshots.{e}.final_val") > mean(f"{prefix}.snapshots.{e}.normal_val_same_epoch")
        for e in epochs
        if mean(f"{prefix}.snapshots.{e}.normal_val_same_epoch") is not None
    ]
    gains = [mean(f"{prefix}.snapshots.{e}.gain") for e in epochs]
    decreasing = all(b <= a for a, b in zip(gains, gains[1:])) if len(gains) > 1 else None
    best_boost = max(mean(f"{prefix}.snapshots.{e}.final_val") for e in epochs)
    table = reports.Table(
        title=title,
        columns=[
            "snapshot epoch",
            "val acc at snapshot (%)",
            f"boosted, after {span} epochs (%)",
            f"normal training at snapshot + {span} (%)",
            "best normal up to then (%)",
            "boost gain (points)",
            f"wall s: {span} boost epochs vs {span} normal",
        ],
        rows=rows,
        caption=(
            f"Preset `{preset}`, validation accuracy, mean ± std over {n} seed(s); the thesis figure gives curves only. "
            f"Finding: thesis claim '{claim}': boosted beats normal training at the same epoch for "
            f"{sum(beats)} of {len(beats)} snapshots ({verdict(all(beats)) if beats else 'n/a: normal training too short'}); gain decreasing with the "
            f"snapshot epoch: {'n/a (one snapshot)' if decreasing is None else verdict(decreasing)} "
            f"(gains {', '.join(f'{100 * g:.2f}' for g in gains)} points). Best boosted snapshot {100 * best_boost:.2f}% vs "
            f"best normal-training epoch {cell(f'{prefix}.normal.best_val')}% in {cfg['epochs']} epochs "
            f"(test accuracy after normal training {cell(f'{prefix}.normal.final_test_accuracy')}%)."
        ),
        footnotes=footnotes,
        source=source,
    )
    written = list(reports.write_table(table, folder / f"{name}_{preset}"))

    blocks = [reports.get_path(r, prefix) for r in runs]
    histories = {"normal training": {"val_accuracy": padded_mean([b["normal"]["val_curve"] for b in blocks], 0)}}
    for e in epochs:
        histories[f"boost of epoch-{e} snapshot"] = {
            "val_accuracy": padded_mean([b["snapshots"][e]["val_curve"] for b in blocks], int(e))
        }
    normal_mean = histories["normal training"]["val_accuracy"]
    best = int(np.nanargmax(normal_mean))
    written.append(
        reports.plot_curves(
            histories,
            "val_accuracy",
            folder / f"{name}_{preset}.png",
            title=title.split(":")[0] + f": snapshot boost vs normal training ({preset}, {n} seed(s))",
            markers={"best normal training": (best + 1, normal_mean[best])},
        )
    )
    return written
