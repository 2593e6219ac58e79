"""Thesis Fig. 10: L2 on the SuperModel head's weights and bias.

Reproduces the figure that closes section 3.3: sub-networks of 120-280-280-10
neurons trained on Fashion-MNIST are merged into a SuperModel whose head
copies their last layers unscaled (f = 1), and the head is re-trained twice
from that same copy: without regularisation, and with L2 on its weights and
bias. The thesis's curves show the validation loss falling with L2 "without
accuracy drop"; it states neither the number of sub-networks, nor their
training, nor the L2 factor, nor the head's epochs. We use six sub-networks
(as in Tables 5 and 6), trained as one fused `PartitionedMLP` with per-member
early stopping, dropout 0.3, and L2 factors 0.001 and 0.01 (Table 6's), each
applied to kernel and bias alike (`build_supernet(l2=..., bias_l2=...)`),
20 head epochs (Table 6's "about 20").

Recorded per head and epoch, on the validation split: accuracy, the loss as
Keras reports it (cross-entropy plus the head's L2 penalty: the thesis's
`val_loss`) and the cross-entropy alone, from the float32 probabilities
clipped at 1e-12 (`metrics.nll`); the heads are compared after their last
epoch. Keras computes its loss from the logits, so for an overconfident head
(the copied, unscaled one) it exceeds our cross-entropy even without a
penalty: a sample whose true-class probability is below 1e-12 counts its
full loss there and 27.6 here. Heads train on features computed once
(`fit_head(on_features=True)`). The members are kept in the run folder;
`--set reuse_models=<run folder>` re-trains heads on them without
re-training the members.

Presets:
- `smoke`: synthetic 784-dim data, tiny members, 1 + 2 epochs.
- `cpu`: full Fashion-MNIST (54k / 6k / 10k), members capped at 5 epochs,
  heads 5 epochs.
- `paper`: members up to 100 epochs (patience 10), heads 20 epochs. Seed 0
  took 20 min wall / 9 CPU-min beside other jobs (members stopped after ~50
  epochs: 7 CPU-min; the three heads 2 CPU-min): expect ~10-15 min per seed
  alone on 2 cores.
"""

import dataclasses

import keras
import numpy as np

from supernet import metrics, reports
from supernet.callbacks import EpochScores
from supernet.models import build_supernet, fit_head, supernet_features
from supernet.models.supernet import HEAD_NAME
from supernet_lab.experiments._beyond import train_members
from supernet_lab.experiments._common import SMOKE_MEMBERS, MembersConfig, by_preset, load_dataset
from supernet_lab.findings import Claim

NAME = "fig10_head_l2"
DESCRIPTION = "SuperModel head (copied, f = 1) re-trained with and without L2 on weights and bias: validation curves"
REPRODUCES = "thesis Fig. 10"

CURVES = ("val_accuracy", "val_loss_keras", "val_nll")
# Accuracy within this many points of the unregularised head counts as "no
# accuracy drop" (our margin; the thesis judges its curves by eye).
NO_DROP_MARGIN = 0.002


def _head_key(l2):
    return "none" if l2 == 0 else f"l2_{l2:g}".replace(".", "p")  # no dots: keys are parts of dotted record paths


def _head_label(l2):
    return "no regularisation" if l2 == 0 else f"L2 {l2:g} on weights and bias"


@dataclasses.dataclass(frozen=True)
class Config(MembersConfig):
    hidden_units: tuple = (120, 280, 280)
    epochs: int = 100
    patience: object = 10
    head_l2s: tuple = (0.0, 0.001, 0.01)
    # The L2 factor the claims read (one of `head_l2s`).
    claim_l2: float = 0.001
    head_epochs: int = 20
    head_learning_rate: float = 1e-3
    head_batch_size: int = 128
    # An earlier run's folder whose kept members to reuse (same seed).
    reuse_models: str = ""


PRESETS = {
    "smoke": Config(**SMOKE_MEMBERS, patience=None, head_epochs=2),
    "cpu": Config(epochs=5, head_epochs=5),
    "paper": Config(),
}

_TEXT = "L2 regularization added to weights and bias during SuperModel's training reduces the error"


def _versus_none(claim_id, text, metric, label, **kwargs):
    """A claim on `metric` of the head with L2 `Config.claim_l2` minus that of the unregularised head."""
    return Claim(
        claim_id, text, "thesis Fig. 10", f"metrics.heads.{_head_key(Config.claim_l2)}.{metric}",
        minus=f"metrics.heads.none.{metric}", label=f"{_head_label(Config.claim_l2)} - no regularisation, {label}",
        **kwargs,
    )


CLAIMS = (
    _versus_none("l2_lowers_val_loss", _TEXT + ".", "val_loss_keras", "validation loss (Keras, with the penalty)",
                 compare="<"),
    _versus_none("l2_lowers_val_nll", _TEXT + " (the cross-entropy alone, without the penalty).", "val_nll",
                 "validation cross-entropy", compare="<"),
    _versus_none("l2_no_accuracy_drop", _TEXT + " without accuracy drop (here: within the margin of the "
                 "unregularised head's accuracy).", "val_accuracy",
                 f"validation accuracy (no drop: above -{100 * NO_DROP_MARGIN:g} points)", threshold=-NO_DROP_MARGIN,
                 scale=100, unit=" points"),
)


def _train_members(config, ds, context):
    model, fit = train_members(config, ds, context.log, patience=config.patience)
    return model, {"epochs_run": len(fit["history"]["loss"]), "best_epochs": fit.get("best_epochs")}


def main(config, context):
    if config.claim_l2 not in config.head_l2s or 0.0 not in config.head_l2s:
        raise ValueError(
            "Config field `head_l2s` must hold 0 and `claim_l2`. "
            f"Received: head_l2s={config.head_l2s!r}, claim_l2={config.claim_l2!r}"
        )
    ds = load_dataset(config)
    context.log(ds.summary())
    with context.stage("train_members"):
        members, fit = context.trained_model(
            "members", lambda: _train_members(config, ds, context), data={"train_examples": len(ds.x_train)}
        )
    with context.stage("features"):
        features = supernet_features(build_supernet(members, init="random", seed=config.seed))
        train = features.predict(ds.x_train, verbose=0, batch_size=1024)
        val = features.predict(ds.x_val, verbose=0, batch_size=1024)
        test = features.predict(ds.x_test, verbose=0, batch_size=1024)
    member_val = np.moveaxis(members.predict(ds.x_val, verbose=0, batch_size=1024), 1, 0)
    result = {
        "members": {"val_accuracy_avg": float(np.mean([metrics.accuracy(ds.y_val, p) for p in member_val])), **fit},
        "heads": {},
    }
    with context.stage("heads"):
        for l2 in config.head_l2s:
            supernet = build_supernet(members, init="copy", downscale=1.0, l2=l2, bias_l2=l2, seed=config.seed)
            curves = EpochScores({"val": (val, ds.y_val)})
            history = fit_head(
                supernet, train, ds.y_train, validation_data=(val, ds.y_val), on_features=True,
                epochs=config.head_epochs, batch_size=config.head_batch_size,
                optimizer=keras.optimizers.Adam(config.head_learning_rate), callbacks=[curves], verbose=0,
            )
            head = {
                "curves": {
                    "val_accuracy": curves.curves["val_accuracy"],
                    "val_loss_keras": [float(v) for v in history.history["val_loss"]],
                    "val_nll": curves.curves["val_nll"],
                },
                "test_accuracy": metrics.accuracy(ds.y_test, keras.ops.convert_to_numpy(supernet.get_layer(HEAD_NAME)(test))),
            }
            head.update({name: values[-1] for name, values in head["curves"].items()})
            result["heads"][_head_key(l2)] = head
            context.log(
                f"  {_head_label(l2):28s}: val acc {head['val_accuracy']:.4f}, val loss {head['val_loss_keras']:.4f}, "
                f"val NLL {head['val_nll']:.4f} after {config.head_epochs} epochs"
            )
    return result


def _mean_curve(runs, key, curve):
    """Mean over seeds of one head's per-epoch curve (runs of different lengths cut to the shortest)."""
    curves = [r["metrics"]["heads"][key]["curves"][curve] for r in runs.runs]
    length = min(len(c) for c in curves)
    return np.mean([c[:length] for c in curves], axis=0)


def report(records, out_dir):
    """Fig. 10's curves per preset, and a table of the heads after their last epoch."""
    written = []
    for runs in by_preset(records):
        config, preset = runs.config, runs.preset
        stem = out_dir / NAME / f"{NAME}_{preset}"
        rows = []
        for l2 in config["head_l2s"]:
            base = f"metrics.heads.{_head_key(l2)}"
            rows.append([_head_label(l2), runs.cell(f"{base}.val_accuracy", 100), runs.cell(f"{base}.val_loss_keras", digits=4),
                         runs.cell(f"{base}.val_nll", digits=4), runs.cell(f"{base}.test_accuracy", 100)])
        table = reports.Table(
            title=f"Fig. 10: SuperModel head re-trained with and without L2 on weights and bias ({preset})",
            columns=["head", "val. acc. (%)", "val. loss (Keras, with penalty)", "val. cross-entropy", "test acc. (%, ours)"],
            rows=rows,
            caption=f"Preset `{preset}`, mean ± std over {runs.n} seed(s), after {config['head_epochs']} head epochs. "
            f"{config['num_members']} sub-networks of {'-'.join(map(str, config['hidden_units']))}-10 (average "
            f"validation accuracy {runs.cell('metrics.members.val_accuracy_avg', 100)}%), the head's weights copied "
            "from them unscaled.",
            source="thesis Fig. 10 (curves only)",
            footnotes=[
                f"Members: dropout {config['dropout']}, Adam lr {config['learning_rate']}, batch {config['batch_size']}, "
                f"at most {config['epochs']} epochs"
                + (f" with per-member early stopping (patience {config['patience']})" if config["patience"] else "")
                + "; the thesis states none of this, nor the number of sub-networks.",
                f"Heads: fresh Adam lr {config['head_learning_rate']}, batch {config['head_batch_size']}; the L2 "
                "factors are ours (the thesis does not state its own).",
                "Keras's loss is computed from the logits; the cross-entropy column from the float32 probabilities "
                "clipped at 1e-12, so an overconfident head's Keras loss exceeds it even without a penalty.",
            ],
        )
        written += reports.write_table(table, stem)

        histories = {
            _head_label(l2): {curve: _mean_curve(runs, _head_key(l2), curve) for curve in CURVES}
            for l2 in config["head_l2s"]
        }
        title = f"Fig. 10 ({preset}, mean of {runs.n} seed(s))"
        written.append(reports.plot_curves(histories, "val_accuracy", stem.with_name(stem.name + "_accuracy.png"),
                                           title=title, xlabel="head epoch"))
        written.append(reports.plot_curves(histories, "val_loss_keras", stem.with_name(stem.name + "_loss.png"),
                                           title=title, xlabel="head epoch"))
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
