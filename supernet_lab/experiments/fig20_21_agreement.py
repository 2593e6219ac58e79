"""Thesis Figures 20 and 21: agreement of independent nets vs FGE snapshots.

Reproduces the similarity matrices of section 4.3: for six independently
trained networks (Fig. 20) and six networks obtained by Fast Geometric
Ensembling (Fig. 21), the percentage of test examples that each pair of
models classifies the same way (`supernet.metrics.agreement_matrix`). The
thesis concludes that FGE snapshots are less diverse than independent nets,
which explains their weaker SuperNets (Table 13).

Protocol (one seed): six Table-2 CNNs (`supernet.models.thesis_cnn`) are
trained from different initialisations with Adam for `pretrain_epochs`
(`_common.pretrained_cnn`: cached in the output folder as `.keras` files
keyed by the configuration, so reruns, and `table13_fge_supernet` on the
same setting, skip them). FGE continues independent net 1 with a fresh SGD
(momentum `fge_momentum`) following
`supernet.schedules.FGECyclic(fge_lr_max, fge_lr_min, cycle)` and
`SnapshotEnsemble` collects six members at the cycle minima (the pre-trained
net itself is not a member); with an `fge_lr_grid` the peak rate is first
chosen on the validation split (`_conv.choose_fge_lr`; a choice made for
the same cached net, e.g. by `table13_fge_supernet`, is reused), with `bn_update`
every member's BatchNorm statistics are recomputed on the training images. Both matrices are stored in the metrics, so
`report` redraws the figures (mean over seeds) from the records alone.

Presets and cost (an epoch's measured cost: `_conv`):

- `smoke`: synthetic 32x32x3 data, 3 + 3 models, 1 epoch, eager steps.
- `cpu`: the nets of `table13_fge_supernet`'s `cpu` preset (the same data,
  training and FGE settings; its three nets are this run's first three
  when both write to one output folder), six of them. Cost per seed, one
  thread, the first three nets loaded from table13's run: 25-31
  CPU-minutes (recorded: 1,491-1,872 CPU-s, 29-39 min wall beside another
  run), of which pre-training three nets ~19 and the learning-rate search
  plus FGE the rest (the search, ~7, is skipped when table13's run has
  cached its choice); ~50 with all six nets to train.
- `paper`: full CIFAR-10 (50000 train / 10000 test), 100 epochs per net
  (the thesis trains its nets "up to 200 epochs"; the figures' DenseNets'
  schedule is not given), FGE as Garipov et al. for VGG-16 (cycle 2 epochs,
  lr 1e-2 -> 5e-4). Check it for one step on generated data with
  `{"dataset": "synthetic", "dataset_kwargs": (("num_train", 256), ("num_test", 64)),
  "pretrain_epochs": 1, "fge_cycle_epochs": 1}`.
"""

import dataclasses

import numpy as np

from supernet_lab.experiments._common import by_preset, bn_momentum_notes, pretrained_cnn
from supernet_lab.experiments._conv import (
    CLAIMS_NOTE, CPU_FGE, CPU_PRETRAIN_EPOCHS, SMOKE_FGE, PretrainedConfig, bn_update_notes, fge_lr_text, pretrained_fge_lr,
    data_notes, fge, group_scores, load_logged, predict_test, smoke,
)
from supernet_lab.findings import Claim
from supernet import reports

NAME = "fig20_21_agreement"
DESCRIPTION = "Same-classification % matrices of 6 independent Table-2 CNNs vs 6 FGE snapshots on CIFAR-10"
REPRODUCES = "thesis Figs. 20 and 21"

GROUPS = {"independent": "Fig. 20: six independently trained nets", "fge": "Fig. 21: six FGE snapshots"}


@dataclasses.dataclass(frozen=True)
class Config(PretrainedConfig):
    validation_size: object = 0
    num_models: int = 6


PRESETS = {
    "smoke": Config(**smoke(64, 64), **SMOKE_FGE, validation_size=16, num_models=3, pretrain_epochs=1, cache=False),
    "cpu": Config(**CPU_FGE, pretrain_epochs=CPU_PRETRAIN_EPOCHS),
    "paper": Config(),
}

# Agreement is a percentage of test examples (0-100): the difference is in
# percentage points, paired within a seed (both groups grow from the same nets).
CLAIMS = (
    Claim(
        "fge_agree_more_than_independent",
        "We observe that the FGE snapshots are less diverse: they classify the same examples alike more often than "
        "independently trained nets do.",
        "thesis section 4.3, Figs. 20-21",
        "metrics.fge.mean_agreement", minus="metrics.independent.mean_agreement",
        label="FGE snapshots - independent nets, mean pairwise agreement on the test split", unit=" points",
    ),
)


def _scores(models, ds, eager):
    probs = predict_test(models, ds, eager)
    scores = group_scores(ds.y_test, probs)
    scores["min_agreement"] = float(np.min(scores["agreement_matrix"]))
    return scores


def main(config, context):
    if config.num_models < 2:
        raise ValueError(f"Argument `num_models` must be >= 2. Received: num_models={config.num_models}")
    ds = load_logged(config, context)
    with context.stage("train_independent"):
        nets = [pretrained_cnn(k, ds, config, context)[0] for k in range(config.num_models)]
    with context.stage("fge"):
        config, lr_choice = pretrained_fge_lr(nets[0], ds, config, context, seed=1000 * config.seed + 99)
        snapshots, cost = fge(nets[0], config.num_models, ds, config, seed=1000 * config.seed + 100)
        context.log(f"  {len(snapshots)} FGE members at steps {cost['steps']}")
    with context.stage("score"):
        result = {"independent": _scores(nets, ds, config.run_eagerly), "fge": _scores(snapshots, ds, config.run_eagerly)}
    for group, r in result.items():
        context.log(
            f"  {group}: mean agreement {r['mean_agreement']:.1f}%, members "
            f"{', '.join(f'{100 * a:.1f}' for a in r['member_accuracy'])}, softmax vote {100 * r['softmax_vote']:.2f}%"
        )
    result["fge_snapshot_steps"] = cost["steps"]
    if lr_choice:
        result["fge_lr_choice"] = lr_choice
    result["agreement_gap"] = result["fge"]["mean_agreement"] - result["independent"]["mean_agreement"]
    return result


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        config, preset = runs.config, runs.preset
        for g, title in GROUPS.items():
            matrices = [np.asarray(r["metrics"][g]["agreement_matrix"], float) for r in runs.runs]
            if len({m.shape for m in matrices}) != 1:
                matrices = matrices[-1:]
            mean_matrix = np.mean(matrices, axis=0)
            prefix = "model" if g == "independent" else "FGE"
            written.append(reports.plot_agreement_matrix(
                mean_matrix, [f"{prefix} {i + 1}" for i in range(len(mean_matrix))], out_dir / NAME / f"{NAME}_{preset}_{g}.png",
                title=f"{title} ({preset}, mean of {len(matrices)} seed(s))",
            ))
        rows = [
            [label]
            + [runs.cell(f"metrics.{g}.{field}", scale, digits) for field, scale, digits in (
                ("mean_agreement", 1, 1), ("min_agreement", 1, 1), ("mean_member_accuracy", 100, 2), ("softmax_vote", 100, 2), ("diversity", 1, 1))]
            for g, label in (("independent", "independent nets (Fig. 20)"), ("fge", "FGE snapshots (Fig. 21)"))
        ]
        notes = bn_momentum_notes(config) + data_notes(
            config, generated="a code-path check only",
            subset="Training subset of {subset} CIFAR-10 images, test split scaled alike; the thesis uses the full data",
        )
        notes += [
            "The thesis's Figs. 20-21 show DenseNets; we use the thesis's Table-2 CNN. The figure values are not in the thesis text, so there is no thesis column.",
            f"Each net: {config['pretrain_epochs']} epochs of Adam (lr {config['pretrain_lr']}), batch {config['batch_size']}; FGE continues net 1 with SGD momentum {config['fge_momentum']}, {fge_lr_text(config, runs.runs)}, cycle {config['fge_cycle_epochs']} epoch(s) (Garipov et al. 2018, VGG-16 setting; not stated in the thesis).",
            *bn_update_notes(config),
            "Agreement is measured on the test split.",
        ]
        table = reports.Table(
            title="Figs. 20-21: same-classification % of independent nets vs FGE snapshots (CIFAR-10)",
            columns=["models", "mean agreement (%)", "min agreement (%)", "mean member acc. (%)", "softmax vote acc. (%)", "diversity"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, mean ± std over {runs.n} seed(s), {config['num_models']} models per group; agreement = "
                "mean off-diagonal entry of the matrix (figures: mean matrix over seeds). The thesis says FGE "
                "snapshots are less diverse than independent nets; our FGE snapshots agree "
                f"{runs.cell('metrics.agreement_gap', digits=1)} points more than the independent nets on average. {CLAIMS_NOTE}"
            ),
            source="thesis section 4.3, Figs. 20 and 21 (figures only, no numbers in the text)",
            footnotes=notes,
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{preset}")
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
