"""Orchestration shared by several experiment modules.

Only glue between a frozen `Config` and `supernet/`: loading the dataset a
config names, caching pre-trained nets in a run's folder, fitting and scoring
plain Keras classifiers, loss histograms stored in results, report strings.
Reusable math and models live in `supernet/`.
"""

import dataclasses
import time

import keras
import numpy as np

from supernet import data, metrics, reports
from supernet._validation import check_converged
from supernet.models import thesis_cnn
from supernet.training import epoch_logger, scores

# Config fields that decide which data a net is trained on; part of every pre-trained net's cache key.
_DATA_FIELDS = ("seed", "dataset", "dataset_kwargs", "subset", "validation_size", "batch_size")


# === Configuration ===


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The fields every experiment's `Config` starts with: its seed and its data.

    `dataset` and `dataset_kwargs` go to `supernet.data.load`; `subset` keeps
    that many training examples; `validation_size` is a fraction or a count
    split off the training set.
    """

    seed: int = 0
    dataset: str = "fashion_mnist"
    dataset_kwargs: tuple = ()
    subset: object = None
    validation_size: object = 6000


@dataclasses.dataclass(frozen=True)
class MembersConfig(DataConfig):
    """`DataConfig` plus K MLP members trained as one fused model with Adam.

    A subclass re-declares a field to change its default.
    """

    num_members: int = 6
    hidden_units: tuple = (200, 466, 466)
    dropout: float = 0.3
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3


# Smoke data shaped like Fashion-MNIST: `Config(**SMOKE_FMNIST, ...)`.
SMOKE_FMNIST = {
    "dataset": "synthetic",
    "dataset_kwargs": (("num_classes", 10), ("input_shape", (784,)), ("num_train", 600), ("num_test", 200)),
    "validation_size": 0.2,
}
# Tiny fused members on `SMOKE_FMNIST` data, for the smoke presets of `MembersConfig` experiments.
SMOKE_MEMBERS = dict(SMOKE_FMNIST, num_members=3, hidden_units=(16, 24, 24), epochs=1)


# === Data ===


def load_dataset(config):
    """`data.load` with `config.dataset`, `validation_size`, `subset`, `seed` and `dataset_kwargs`."""
    return data.load(
        config.dataset,
        validation_size=config.validation_size,
        subset=config.subset,
        seed=config.seed,
        **dict(config.dataset_kwargs),
    )


# === Training ===


def timed_fit(model, *args, **kwargs):
    """`model.fit(*args, **kwargs)`; returns its `{"wall_s", "cpu_s"}`."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(*args, **kwargs)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def fit_classifier(model, ds, *, learning_rate, epochs, batch_size, patience=None, loss="sparse_categorical_crossentropy",
                   log=None):
    """Fit `model` with Adam on `ds` (validation split monitored).

    With a `patience`, training stops early on `val_loss` and the best
    weights are restored; with a `log` (`fn(str)`), progress lines go to it
    every few epochs. Returns `(history, early_stopping_or_None)`.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
    stop = None
    if patience is not None:
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = model.fit(
        ds.x_train,
        ds.y_train,
        validation_data=(ds.x_val, ds.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=([stop] if stop is not None else []) + [keras.callbacks.TerminateOnNaN()]
        + ([epoch_logger(log, epochs, keys=("loss", "val_loss", "val_accuracy"))] if log is not None else []),
        verbose=0,
    )
    check_converged(model, history.history.get("loss", []), f"Model {model.name!r}", learning_rate)
    return history, stop


def split_scores(model, ds, split="test"):
    """`supernet.training.scores` (accuracy, NLL) of `model` on `ds`'s `split`."""
    x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
    return scores(y, model.predict(x, verbose=0, batch_size=1024))


# === Table-2 CNNs ===


def thesis_net(ds, config, **kwargs):
    """A Table-2 CNN for `ds` with `config.l2`, `config.bn_momentum` and `config.dtype_policy`."""
    return thesis_cnn(
        ds.input_shape, ds.num_classes, l2=config.l2, bn_momentum=config.bn_momentum, dtype=config.dtype_policy, **kwargs
    )


def pretrained_cnn(k, ds, config, context):
    """Independent Table-2 net `k`, trained with Adam, kept in the output folder's cache if `config.cache`.

    With `config.cache` the net and its training time are stored by
    `context.cached_model` as `pretrain_{k}`, keyed by `k`, the config's
    data fields, `pretrain_epochs`, `pretrain_lr`, `bn_momentum`, `l2` and
    `dtype_policy`, so later runs of that setting, of any experiment, load
    it. Without it they last only until the
    run is stored (`context.resumable`): a killed run still skips the nets
    it finished.

    Returns:
        `(model, cost)`, cost holding `wall_s`, `cpu_s` and `cached`.
    """

    def train():
        keras.utils.set_random_seed(1000 * config.seed + k)
        model = thesis_net(ds, config)
        model.compile(keras.optimizers.Adam(config.pretrain_lr), "sparse_categorical_crossentropy", run_eagerly=config.run_eagerly)
        context.log(f"pre-training net {k}: {config.pretrain_epochs} epochs")
        progress = epoch_logger(context.log, config.pretrain_epochs, keys=("loss",))
        cost = timed_fit(
            model, ds.x_train, ds.y_train, batch_size=config.batch_size, epochs=config.pretrain_epochs, verbose=0,
            callbacks=[progress],
        )
        return model, cost

    if config.cache:
        key = {f: getattr(config, f) for f in _DATA_FIELDS + ("pretrain_epochs", "pretrain_lr", "bn_momentum", "l2", "dtype_policy")}
        return context.cached_model(f"pretrain_{k}", dict(key, k=k), train)
    model, cost = context.resumable(f"pretrain_{k}", train)
    return model, dict(cost, cached=False)


# === Loss histograms (stored as counts, redrawn by the reports) ===


def bn_momentum_notes(config):
    """Report footnote for a BatchNormalization momentum other than the thesis's.

    Args:
        config: a recorded config dict (or Config); a dict without
            `bn_momentum` stands for the default, the thesis's 0.99.
    """
    momentum = config.get("bn_momentum", 0.99) if isinstance(config, dict) else config.bn_momentum
    if momentum == 0.99:
        return []
    return [
        f"BatchNormalization momentum {momentum} (thesis and Keras default: 0.99): in runs of a few hundred steps "
        "the 0.99 moving statistics keep most of their initial values and held-out accuracy stays near chance."
    ]


def loss_edges(config):
    """Log-spaced bin edges from `config.loss_hist_min`, `loss_hist_max`, `loss_hist_bins`."""
    return np.logspace(np.log10(config.loss_hist_min), np.log10(config.loss_hist_max), config.loss_hist_bins + 1)


def loss_histogram(y, probs, edges):
    """Counts of per-sample cross-entropies over `edges` (clipped into range)."""
    losses = metrics.per_sample_cross_entropy(y, probs)
    losses = np.clip(losses, edges[0], np.nextafter(edges[-1], 0))
    return np.histogram(losses, bins=edges)[0].astype(int).tolist()


def losses_from_histogram(counts, edges):
    """Pseudo-samples at the geometric bin centres, to redraw a stored histogram."""
    edges = np.asarray(edges, dtype=float)
    centres = np.sqrt(edges[:-1] * edges[1:])
    return np.repeat(centres, np.asarray(counts, dtype=int))


# === Report strings ===


class Seeds:
    """One preset's successful runs, with the mean ± std over them of any dotted record path.

    `cell("metrics.ensemble.accuracy", scale=100)` gives `"91.36 ± 0.12"`
    (see `reports.format_mean_std`), `mean(path)` the mean over the runs that
    have the value (None if none does); `n` counts the runs and `config` is
    the config of the newest one.
    """

    def __init__(self, preset, runs):
        self.preset, self.runs = preset, list(runs)
        self.n = len(self.runs)
        self.config = self.runs[-1]["config"]
        self._stats = {}

    def stats(self, path):
        """`{"mean", "std", "n", "values", "missing"}` of `path` (see `reports.aggregate`)."""
        if path not in self._stats:
            self._stats[path] = reports.aggregate(self.runs, by=["preset"], metrics=[path])[0]["metrics"][path]
        return self._stats[path]

    def mean(self, path):
        return self.stats(path)["mean"]

    def cell(self, path, scale=1.0, digits=2):
        s = self.stats(path)
        return reports.format_mean_std(s["mean"], s["std"], s["n"], scale=scale, digits=digits)


def holdout_head_claims(prefix, held_out, train_set, label, *, accuracy="accuracy", nll="nll", **claim):
    """The two stacking claims: a head re-trained on held-out data beats one re-trained on the members' training data.

    For experiments with a held-out head protocol (`supernet.data.holdout_split`)
    that also score a head of the thesis's protocol on the same members.
    Stacking's premise (Wolpert 1992): a combiner fit on the members'
    predictions for data they were trained on learns their training-set
    confidence, not their confidence on new data.

    Args:
        prefix: the claims' ids start with it.
        held_out, train_set: functions of a metric name giving the dotted
            record path of that metric for each head.
        label: what is compared, e.g. `"SuperModel at 2.84M"`, or `""`.
        accuracy, nll: the names of the validation accuracy and
            cross-entropy metrics.
        **claim: further `Claim` fields, e.g. `datasets`.

    Returns:
        `(accuracy claim, cross-entropy claim)`.
    """
    from supernet_lab.findings import Claim

    return tuple(
        Claim(
            f"{prefix}_{claim_id}",
            "A combiner trained on the members' predictions for data they did not see generalises better than one "
            f"trained on their own training data: the held-out head's validation {what} is {word} the train-set "
            "head's.",
            "stacked generalisation (Wolpert 1992)", held_out(metric), compare=compare, minus=train_set(metric),
            label=f"{label + ': ' if label else ''}held-out head - train-set head, validation {what}", **display, **claim,
        )
        for claim_id, metric, compare, what, word, display in (
            ("higher_accuracy", accuracy, ">", "accuracy", "above", dict(scale=100, unit=" points")),
            ("lower_nll", nll, "<", "cross-entropy", "below", {}),
        )
    )


def by_preset(records):
    """`Seeds` of each preset of `records` that has successful runs, presets in sorted order.

    Failed runs (`status` other than ok) are left out: their metrics hold the error.
    """
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    for preset in sorted({r["preset"] for r in ok}):
        yield Seeds(preset, [r for r in ok if r["preset"] == preset])




def hms(seconds):
    """Seconds as `HH:MM:SS`, rounded to the second."""
    seconds = int(round(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
