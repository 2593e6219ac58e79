"""Quickstart: K fused MLPs on the bundled digits data, merged into a SuperNet.

The main job of the README: a few seconds on a laptop, no download. K member
MLPs are trained as one `PartitionedMLP`, exported, combined by softmax and
majority voting, and merged into a SuperNet head whose copied weights are
down-scaled by a factor chosen on validation data, then re-trained.
"""

import dataclasses

import keras
import numpy as np

from supernet_lab.experiments._common import by_preset
from supernet import data, metrics, reports
from supernet.models import PartitionedMLP, build_supernet, fit_head
from supernet.training import scores

NAME = "quickstart"
DESCRIPTION = "K fused MLPs on scikit-learn's digits -> voting vs SuperNet head (no download)"
REPRODUCES = "thesis Fig. 8 / Table 6 style, on digits"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    num_members: int = 4
    hidden_units: tuple = (64, 64)
    dropout: float = 0.1
    epochs: int = 40
    head_epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    validation_size: float = 0.15


PRESETS = {
    "smoke": Config(epochs=3, head_epochs=2),
    "cpu": Config(),
    # digits is not a thesis dataset: the paper preset is the cpu one.
    "paper": Config(),
}


def main(config, context):
    ds = data.digits(validation_size=config.validation_size, seed=config.seed)
    context.log(ds.summary())
    fit_args = dict(validation_data=(ds.x_val, ds.y_val), batch_size=config.batch_size, verbose=0)

    with context.stage("train_members"):
        model = PartitionedMLP(ds.input_shape[0], list(config.hidden_units), ds.num_classes,
                               num_members=config.num_members, dropout=config.dropout, seed=config.seed)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        every = max(1, config.epochs // 4)
        progress = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (epoch + 1) % every == 0
            and context.log(
                f"  epoch {epoch + 1}/{config.epochs}: member acc "
                f"{logs['member_accuracy']:.3f}, val vote acc {logs['val_vote_accuracy']:.3f}"
            )
        )
        model.fit(ds.x_train, ds.y_train, epochs=config.epochs, callbacks=[progress], **fit_args)

    member_probs = np.moveaxis(model.predict(ds.x_test, verbose=0), 1, 0)
    rows = {f"member {k + 1}": scores(ds.y_test, p) for k, p in enumerate(member_probs)}
    rows["softmax voting"] = scores(ds.y_test, metrics.softmax_vote(member_probs))
    rows["majority voting"] = {"accuracy": float(np.mean(metrics.majority_vote(member_probs) == ds.y_test))}

    with context.stage("supernet_head"):
        supernet = build_supernet(model, init="copy", downscale="auto", validation_data=(ds.x_val, ds.y_val), seed=config.seed)
        rows["SuperNet, copied head"] = scores(ds.y_test, supernet.predict(ds.x_test, verbose=0))
        fit_head(supernet, ds.x_train, ds.y_train, epochs=config.head_epochs,
                 optimizer=keras.optimizers.Adam(config.learning_rate), **fit_args)
        rows["SuperNet, re-trained head"] = scores(ds.y_test, supernet.predict(ds.x_test, verbose=0))

    for name, row in rows.items():
        context.log(f"  {name:26s} accuracy {100 * row['accuracy']:.2f}%")
    return {
        "rows": rows,
        "downscale": supernet.supernet_info["downscale"],
        "diversity": metrics.diversity(ds.y_test, member_probs),
    }


def report(records, out_dir):
    """Markdown and LaTeX table per preset, mean ± std over seeds."""
    written = []
    for runs in by_preset(records):
        cell = runs.cell

        def cost(stage):
            return f"wall {cell(f'timings.{stage}.wall_s')} s, CPU {cell(f'timings.{stage}.cpu_s')} s"

        table = reports.Table(
            title=f"Quickstart: SuperNet of {runs.config['num_members']} MLPs on digits ({runs.preset})",
            columns=["model", "test accuracy (%)", "test NLL"],
            rows=[
                [name, cell(f"metrics.rows.{name}.accuracy", 100), cell(f"metrics.rows.{name}.nll", digits=3)]
                for name in runs.runs[-1]["metrics"]["rows"]
            ],
            caption=(
                f"Preset `{runs.preset}`, mean ± std over {runs.n} seed(s). Members trained as one fused "
                f"PartitionedMLP: {cost('train_members')}; SuperNet head (auto downscale f = "
                f"{cell('metrics.downscale')}, then re-trained): {cost('supernet_head')}. "
                "Construction as thesis Fig. 8, head initialisation as thesis Table 6; the thesis has no digits numbers."
            ),
            footnotes=[
                "scikit-learn's 8x8 digits (1797 images), not a thesis dataset: a bundled stand-in so the quickstart needs no download.",
                "Down-scaling factor chosen automatically by minimising validation NLL; the thesis chose it by hand.",
            ],
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{runs.preset}")
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
