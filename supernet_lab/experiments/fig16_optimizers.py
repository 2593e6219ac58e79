"""Thesis Fig. 16: four Table-2 CNNs trained with adagrad, rmsprop, nadam and adam, merged into a SuperNet.

Protocol (thesis section 4.1, Fig. 16). Four copies of the thesis's CIFAR-10
CNN (Table 2; `supernet.models.thesis_cnn`) are trained independently, each
with a different optimizer (adagrad, rmsprop, nadam, adam), and their
validation accuracy and loss are recorded per epoch. After training the four
nets are merged into a SuperNet (thesis Fig. 8): their penultimate features
feed one softmax head whose weights are copied from the members' last layers
(bias = mean), down-scaled by a factor chosen on the validation split, and
re-trained for a few epochs with the members frozen (`fit_head`). The
figure shows the four curves and the SuperNet's accuracy as a dot after the
last epoch; softmax and majority voting of the four are recorded too.

Learning rates are the Keras 2 defaults of the thesis's time (adagrad 0.01,
rmsprop 0.001, nadam 0.002, adam 0.001); the thesis does not list them.

Scale of the `cpu` preset (`_conv.CPU_SCALE`): a stratified subset of
10,000 training images (9,000 train / 1,000 validation; 2,000 test),
convolutions in bfloat16, 15 epochs per net. Cost per seed, one thread:
about 20-24 CPU-minutes (recorded: 1,209-1,407 CPU-s, 24-31 min wall
beside another run). The `paper` preset uses the full data and 200 epochs.

Test-friendly override of the `paper` preset (one step on generated data):
`{"dataset": "synthetic", "epochs": 1, "head_epochs": 1}`.
"""

import dataclasses

import numpy as np

from supernet_lab.experiments._common import by_preset, bn_momentum_notes
from supernet_lab.experiments._conv import (
    CLAIMS_NOTE, CPU_SCALE, ENSEMBLE_METHODS, ConvConfig, HeadConfig, data_notes, ensemble_rows, load_logged, make_optimizer,
    smoke, stage_times, thesis_net, train,
)
from supernet_lab.findings import Claim
from supernet import reports

NAME = "fig16_optimizers"
DESCRIPTION = "Four Table-2 CNNs (adagrad, rmsprop, nadam, adam) on CIFAR-10 merged into a SuperNet"
REPRODUCES = "thesis Fig. 16"

THESIS_OPTIMIZERS = ("adagrad", "rmsprop", "nadam", "adam")


@dataclasses.dataclass(frozen=True)
class Config(HeadConfig, ConvConfig):
    optimizers: tuple = (("adagrad", 0.01), ("rmsprop", 0.001), ("nadam", 0.002), ("adam", 0.001))
    epochs: int = 200


PRESETS = {
    "smoke": Config(**smoke(120, 40), optimizers=(("rmsprop", 0.001), ("adam", 0.001)), epochs=1, head_epochs=1),
    "cpu": Config(**CPU_SCALE, epochs=15),
    "paper": Config(),
}
# Test accuracy after the last epoch, methods paired within a seed. Beating
# the best member in every seed is beating each member.
_SUPERNET = "metrics.rows.supernet.test_accuracy"
_POINTS = dict(scale=100, unit=" points")

CLAIMS = (
    Claim(
        "supernet_beats_best_member",
        "The SuperNet created from the four nets trained with adagrad, rmsprop, nadam and adam is more accurate than "
        "each of them (Fig. 16: its dot lies above all four curves).",
        "thesis section 4.1, Fig. 16",
        _SUPERNET, minus="metrics.rows.best_member.test_accuracy",
        label="SuperNet - best single net, test accuracy", **_POINTS,
    ),
    Claim(
        "supernet_beats_softmax",
        "SuperNet wins over the classical voting ensembles: it beats softmax voting of the same nets.",
        "thesis section 4.1 (said of Figs. 17-18; Fig. 16 shows no voting)",
        _SUPERNET, minus="metrics.rows.softmax.test_accuracy",
        label="SuperNet - softmax voting, test accuracy", **_POINTS,
    ),
    Claim(
        "supernet_beats_majority",
        "SuperNet wins over the classical voting ensembles: it beats majority voting of the same nets.",
        "thesis section 4.1 (said of Figs. 17-18; Fig. 16 shows no voting)",
        _SUPERNET, minus="metrics.rows.majority.test_accuracy",
        label="SuperNet - majority voting, test accuracy", **_POINTS,
    ),
)


def _train_member(config, ds, context, name, lr):
    """One Table-2 CNN trained with optimizer `name`; returns `(model, history)`."""
    model = thesis_net(ds, config, name=f"thesis_cnn_{name}")
    history, _ = train(model, ds, optimizer=make_optimizer(name, lr), epochs=config.epochs, batch_size=config.batch_size, log=context.log)
    return model, history


def main(config, context):
    ds = load_logged(config, context)
    members, curves = [], {}
    with context.stage("train_members"):
        for k, (name, lr) in enumerate(config.optimizers):
            context.log(f"member {k + 1}/{len(config.optimizers)}: {name} (lr {lr}), {config.epochs} epochs")
            model, history = context.resumable(f"member_{k + 1}", lambda name=name, lr=lr: _train_member(config, ds, context, name, lr))
            members.append(model)
            curves[name] = {"val_accuracy": history["val_accuracy"], "val_loss": history["val_loss"]}
    with context.stage("supernet"):
        rows = ensemble_rows(members, ds, config)
    rows["members"] = {name: rows["members"][str(k + 1)] for k, (name, _) in enumerate(config.optimizers)}
    context.log(
        f"  SuperNet val {rows['supernet']['val_accuracy']:.4f} / test {rows['supernet']['test_accuracy']:.4f}; "
        f"best member val {rows['best_member']['val_accuracy']:.4f}"
    )
    return {"curves": curves, "rows": rows}


def report(records, out_dir):
    written = []
    folder = out_dir / NAME
    for runs in by_preset(records):
        cfg, preset, n = runs.config, runs.preset, runs.n
        names = [name for name, _ in cfg["optimizers"]]
        lines = [(f"members.{name}", f"{name} (lr {lr})") for name, lr in cfg["optimizers"]] + list(ENSEMBLE_METHODS)
        rows = [[label] + [runs.cell(f"metrics.rows.{key}.{split}_accuracy", 100) for split in ("val", "test")] for key, label in lines]
        footnotes = bn_momentum_notes(cfg) + data_notes(cfg)
        if cfg["epochs"] != 200:
            footnotes.append(f"{cfg['epochs']} epochs per net (thesis: up to 200).")
        if tuple(names) != THESIS_OPTIMIZERS:
            footnotes.append(f"Optimizers {tuple(names)} (thesis: {THESIS_OPTIMIZERS}).")
        footnotes.append(
            f"Learning rates (Keras 2 defaults), batch {cfg['batch_size']} and no data augmentation: not stated in the thesis."
        )
        footnotes.append(
            f"SuperNet head: copied weights, down-scale '{cfg['downscale']}' (validation NLL), re-trained "
            f"{cfg['head_epochs']} epochs with Adam lr {cfg['head_learning_rate']}. Test = CIFAR-10 test split; the thesis "
            "plots validation accuracy."
        )
        table = reports.Table(
            title=f"Fig. 16: {len(names)} Table-2 CNNs with different optimizers and their SuperNet ({preset})",
            columns=["model", "val accuracy (%)", "test accuracy (%)"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, accuracy after {cfg['epochs']} epochs, mean ± std over {n} seed(s); the thesis gives "
                f"curves only. {CLAIMS_NOTE} "
                + stage_times(runs, (("train_members", "training"), ("supernet", "SuperNet")))
            ),
            footnotes=footnotes,
            source="thesis section 4.1, Fig. 16",
        )
        written += reports.write_table(table, folder / f"{NAME}_{preset}")

        for metric in ("val_accuracy", "val_loss"):
            histories = {
                name: {metric: [float(v) for v in np.mean([r["metrics"]["curves"][name][metric] for r in runs.runs], axis=0)]}
                for name in names
            }
            markers = None
            if metric == "val_accuracy":
                markers = {"SuperNet (val)": (cfg["epochs"] + 1, runs.mean("metrics.rows.supernet.val_accuracy"))}
            written.append(reports.plot_curves(
                histories, metric, folder / f"{NAME}_{metric}_{preset}.png",
                title=f"Fig. 16: {metric} per optimizer ({preset}, {n} seed(s))", markers=markers,
            ))
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
