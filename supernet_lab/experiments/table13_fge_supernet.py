"""Thesis Table 13: SuperNets of FGE snapshots vs of independently trained nets.

Reproduces section 4.3 ("Snapshot Supermodeling"): three groups of Table-2
CNNs obtained with Fast Geometric Ensembling (FGE, Garipov et al. 2018) and
one group of independently trained Table-2 CNNs, each group merged into a
SuperNet (members frozen, one softmax head over their concatenated
penultimate features, copied and down-scaled, then re-trained) and compared
with softmax voting and with the members themselves. Next to FGE we run a
Snapshot Ensemble (Huang et al. 2017) at an equal budget of iterations.

Protocol (one seed):

1. Independent nets: `num_independent` Table-2 nets
   (`supernet.models.thesis_cnn`) trained from different initialisations with
   Adam for `pretrain_epochs` epochs (`_common.pretrained_cnn`). Trained
   nets are cached in the output folder (a `.keras` file plus its measured
   training time, keyed by the configuration), so a rerun, or
   `fig20_21_agreement` on the same setting, skips them.
2. FGE run `r` (one per entry of `fge_members`): starts from independent
   net `r` (FGE needs a pre-trained net; re-using the independent nets as
   starting points saves three trainings), is compiled with a fresh SGD
   (momentum `fge_momentum`) whose learning rate follows
   `supernet.schedules.FGECyclic(fge_lr_max, fge_lr_min, cycle)` with a
   cycle of `fge_cycle_epochs` epochs, and `SnapshotEnsemble` collects a
   member at every cycle minimum (mid-cycle); training stops right after
   the last member. The pre-trained net itself is not a member. With an
   `fge_lr_grid`, the peak rate is first chosen on the validation split
   from net 1 (`_conv.choose_fge_lr`, kept in the cache beside the net for
   later runs on it); with `bn_update`, every member's
   BatchNorm statistics are recomputed on the training images.
3. Snapshot Ensemble: a fresh Table-2 net trained with SGD and
   `supernet.schedules.SnapshotCosine(snapshot_lr, T, snapshot_cycles)`,
   a member at the end of every cosine cycle. Its budget `T` equals the
   iterations of one FGE run with `snapshot_cycles` members *including* its
   pre-training (rounded up to a multiple of `snapshot_cycles`), i.e. the
   same number of SGD/Adam updates from scratch to the last member.
4. Every group is scored on the test split: each member, softmax voting
   (mean probability; the thesis's "sum of probabilities" has the same
   argmax), majority voting, and the SuperNet (`build_supernet` with the
   copied head, down-scaled by `choose_downscale` on the validation split,
   head re-trained for `head_epochs` on features cached once per member;
   the copied head is scored before re-training too, the re-training's
   premise). Also the mean off-diagonal agreement ("same classification %")
   and the normalised diversity.

Presets and cost (an epoch's and a prediction's measured cost: `_conv`):

- `smoke`: synthetic 32x32x3 data (64 train / 32 val / 64 test), 1 epoch,
  three FGE runs and groups of 2-3 members, eager train steps; checks the code path only.
- `cpu` (`_conv.CPU_SCALE`): real CIFAR-10, stratified training subset of
  10,000 images (1,000 held out for validation; 2,000 test images),
  convolutions in bfloat16, pre-training 20 epochs (~68% test accuracy),
  FGE cycles of 2 epochs as in the reference, its peak rate chosen from
  1e-2, 3e-3, 1e-3 and 3e-4 (the reference's 1e-2 throws Adam-trained
  nets out of their basin: members end below their start), every
  snapshot's BatchNorm statistics recomputed (short cycles leave the
  running statistics of an earlier point), groups of 3/4/5 FGE members
  and 3 independent nets as in the thesis, a 3-cycle Snapshot Ensemble.
  Cost per seed, one thread (seed 0): 43 CPU-minutes, of which pre-training
  18, the learning-rate search 7, the FGE runs 7 and the Snapshot Ensemble
  8; ~25 when `fig20_21_agreement` has trained the nets.
- `paper`: the thesis's setting as far as it is stated: full CIFAR-10
  (45000 train / 5000 val / 10000 test), 100 pre-training epochs (the
  thesis trains its Table-2 nets "up to 200 epochs"; the FGE pre-training
  length is not stated), FGE hyper-parameters of Garipov et al. for VGG-16
  (cycle 2 epochs, lr 1e-2 -> 5e-4, SGD momentum 0.9).
  Check it for one step on generated data with the overrides
  `{"dataset": "synthetic", "dataset_kwargs": (("num_train", 256), ("num_test", 64)),
  "validation_size": 32, "pretrain_epochs": 1, "fge_cycle_epochs": 1, "head_epochs": 1}`.
"""

import dataclasses
import math

import keras
import numpy as np

from supernet_lab.experiments._common import by_preset, bn_momentum_notes, pretrained_cnn, thesis_net
from supernet_lab.experiments._conv import (
    CLAIMS_NOTE, CPU_FGE, CPU_PRETRAIN_EPOCHS, SMOKE_FGE, PretrainedConfig, bn_update_notes, fge_lr_text, pretrained_fge_lr,
    collect_snapshots, data_notes, fge, fge_cycle_steps, fge_steps, group_scores, load_logged, smoke,
    steps_per_epoch,
)
from supernet_lab.findings import Claim
from supernet import metrics, reports
from supernet.models import build_supernet, choose_downscale
from supernet.models.supernet import HEAD_NAME, merged_logits
from supernet.schedules import SnapshotCosine

NAME = "table13_fge_supernet"
DESCRIPTION = "CIFAR-10 Table-2 CNNs: SuperNets of FGE snapshots vs of independent nets (+ Snapshot Ensemble)"
REPRODUCES = "thesis Table 13"

# Thesis Table 13 (validation accuracy on CIFAR-10): members 1'..K', SuperNet, softmax voting.
THESIS = {
    "FGE 1": {"members": (0.8506, 0.8347, 0.825), "supernet": 0.877, "softmax": 0.855},
    "FGE 2": {"members": (0.8547, 0.8601, 0.8764, 0.862), "supernet": 0.8973, "softmax": 0.8774},
    "FGE 3": {"members": (0.8347, 0.8195, 0.8548, 0.8211, 0.825), "supernet": 0.8930, "softmax": 0.8534},
    "Independent models": {"members": (0.8619, 0.8548, 0.8434), "supernet": 0.9030, "softmax": 0.8804},
}
INDEPENDENT = "Independent models"
SNAPSHOT = "Snapshot Ensemble"


@dataclasses.dataclass(frozen=True)
class Config(PretrainedConfig):
    num_independent: int = 3
    fge_members: tuple = (3, 4, 5)
    snapshot_cycles: int = 3
    snapshot_lr: float = 0.05
    snapshot_momentum: float = 0.9
    head_epochs: int = 10
    head_lr: float = 1e-3


PRESETS = {
    # Three FGE runs, as in `cpu` and `paper`: the claims read every group.
    "smoke": Config(
        **smoke(96, 64), **SMOKE_FGE, validation_size=32, pretrain_epochs=1, num_independent=3, fge_members=(2, 2, 2),
        snapshot_cycles=2, head_epochs=1, cache=False,
    ),
    "cpu": Config(**CPU_FGE, pretrain_epochs=CPU_PRETRAIN_EPOCHS, head_epochs=5),
    "paper": Config(),
}


def _group(label, field="supernet"):
    """Dotted path of one field of one group's scores in a record."""
    return f"metrics.groups.{label}.{field}"


# The three FGE groups of Table 13 (every preset runs three). Test accuracy,
# groups paired within a seed (FGE run r continues independent net r). "FGE 1"
# has as many members as the Snapshot Ensemble has cycles in every preset.
_FGE = ("FGE 1", "FGE 2", "FGE 3")
_POINTS = dict(scale=100, unit=" points")

CLAIMS = tuple(
    Claim(
        f"fge{label[-1]}_supernet_beats_softmax",
        "The gain of Supermodeling of FGE snapshots is notable: their SuperNet beats their softmax voting.",
        "thesis section 4.3, Table 13",
        _group(label), minus=_group(label, "softmax_vote"),
        source_value=THESIS[label]["supernet"] - THESIS[label]["softmax"],
        label=f"SuperNet - softmax voting of {label}, test accuracy", **_POINTS,
    )
    for label in _FGE
) + tuple(
    Claim(
        f"independent_supernet_beats_fge{label[-1]}",
        "Independent models reach a bit higher score with Supermodeling approach, despite the lower number of "
        "submodels: their SuperNet beats the SuperNet of every FGE group.",
        "thesis section 4.3, Table 13",
        _group(INDEPENDENT), minus=_group(label),
        source_value=THESIS[INDEPENDENT]["supernet"] - THESIS[label]["supernet"],
        label=f"SuperNet of independent nets - of {label}, test accuracy", **_POINTS,
    )
    for label in _FGE
) + (
    Claim(
        "fge_agree_more_than_independent",
        "FGE method does not bring diverse models as independent training: FGE snapshots agree with each other more "
        "than independent nets do.",
        "thesis section 4.3 (Figs. 20-21)",
        "metrics.summary.fge_agreement_mean", minus=_group(INDEPENDENT, "mean_agreement"),
        label="mean agreement, FGE groups (mean) - independent nets, % of test examples", unit=" points",
    ),
    Claim(
        "snapshot_ensemble_supernet_beats_softmax",
        "A SuperNet of Snapshot Ensemble snapshots beats their softmax voting, as for FGE snapshots.",
        "not in the thesis: its section 4.3 claim carried to a Snapshot Ensemble (Huang et al. 2017)",
        _group(SNAPSHOT), minus=_group(SNAPSHOT, "softmax_vote"),
        label="SuperNet - softmax voting of the Snapshot Ensemble, test accuracy", **_POINTS,
    ),
    *(
        Claim(
            f"{key}_retrained_head_over_copied",
            "After the training, we have created the SuperNet and additionally fit the last layer: re-training the "
            "copied, down-scaled head raises the SuperNet's accuracy over the copied head (which predicts about like "
            "the softmax vote).",
            "ours: the premise of the thesis's SuperNet protocol (section 4.1), for Table 13's groups",
            _group(label), minus=_group(label, "supernet_copied_head"),
            label=f"SuperNet of {label}, re-trained - copied head, test accuracy", **_POINTS,
        )
        for key, label in (("fge1", "FGE 1"), ("fge2", "FGE 2"), ("fge3", "FGE 3"), ("independent", INDEPENDENT))
    ),
    Claim(
        "fge_beats_snapshot_ensemble",
        "FGE beats a Snapshot Ensemble at an equal budget of iterations: the SuperNet of as many FGE snapshots "
        "(FGE 1) beats the Snapshot Ensemble's.",
        "Garipov et al. 2018 (not in the thesis)",
        _group("FGE 1"), minus=_group(SNAPSHOT),
        label="SuperNet of FGE 1 - of the Snapshot Ensemble, test accuracy", **_POINTS,
    ),
)


# === Training and scoring ===


def _snapshot_ensemble(ds, config):
    """Snapshot Ensemble from scratch, budget = pre-training + one FGE run."""
    cycles = config.snapshot_cycles
    budget = config.pretrain_epochs * steps_per_epoch(ds, config) + fge_steps(cycles, ds, config)
    total = cycles * math.ceil(budget / cycles)
    keras.utils.set_random_seed(1000 * config.seed + 200)
    model = thesis_net(ds, config)
    schedule = SnapshotCosine(config.snapshot_lr, total_steps=total, num_cycles=cycles)
    model.compile(keras.optimizers.SGD(schedule, momentum=config.snapshot_momentum), "sparse_categorical_crossentropy", run_eagerly=config.run_eagerly)
    models, cost = collect_snapshots(model, schedule, cycles, ds, config, total)
    return models, dict(cost, total_steps=total)


def _member_outputs(members, ds, eager=False):
    """Each member's penultimate features and probabilities on train/val/test.

    One prediction pass per member over the three splits; the SuperNet head
    is then fitted on these cached features, as `fit_head` does, without
    recomputing them for the copied head, the head fit and the test scores.
    """
    xs = (ds.x_train, ds.x_val, ds.x_test)
    cuts = np.cumsum([len(x) for x in xs])[:-1]
    features, probs = [], []
    for member in members:
        probe = keras.Model(member.inputs, [member.layers[-1].input, member.outputs[0]])
        probe.run_eagerly = eager
        f, p = probe.predict(np.concatenate(xs), batch_size=512, verbose=0)
        features.append(np.split(f.reshape(len(f), -1), cuts))
        probs.append(np.split(p, cuts))
    return features, probs


def _supernet_scores(members, features, ds, config, seed):
    """SuperNet of `members` (copied, down-scaled head, re-trained) on cached features."""
    supernet = build_supernet(members, init="copy", downscale=1.0, seed=seed)
    head = supernet.get_layer(HEAD_NAME)
    train, val, test = (np.concatenate([f[i] for f in features], axis=1) for i in range(3))
    kernel, bias = head.get_weights()
    factor = choose_downscale(merged_logits(val, kernel, bias), ds.y_val) if len(val) else 1.0
    head.set_weights([kernel / factor, bias / factor])
    head_model = keras.Sequential([keras.Input((train.shape[1],)), head])
    head_model.compile(keras.optimizers.Adam(config.head_lr), "sparse_categorical_crossentropy", run_eagerly=config.run_eagerly)
    before = head_model.predict(test, batch_size=1024, verbose=0)
    head_model.fit(train, ds.y_train, batch_size=config.batch_size, epochs=config.head_epochs, verbose=0)
    after = head_model.predict(test, batch_size=1024, verbose=0)
    return {
        "supernet": metrics.accuracy(ds.y_test, after),
        "supernet_nll": metrics.nll(ds.y_test, after),
        "supernet_copied_head": metrics.accuracy(ds.y_test, before),
        "downscale": float(factor),
    }


def _evaluate(members, ds, config, seed):
    """Members, voting and SuperNet of one group on the test split."""
    y = ds.y_test
    features, member_probs = _member_outputs(members, ds, eager=config.run_eagerly)
    probs = np.stack([p[2] for p in member_probs])
    return {
        "num_members": len(members),
        **group_scores(y, probs),
        "softmax_vote_nll": metrics.nll(y, metrics.softmax_vote(probs)),
        "majority_vote": float(np.mean(metrics.majority_vote(probs) == y)),
        **_supernet_scores(members, features, ds, config, seed),
    }


def main(config, context):
    if len(config.fge_members) > config.num_independent:
        raise ValueError(
            "Each FGE run starts from one independent net, so `num_independent` must be >= "
            f"len(fge_members). Received: num_independent={config.num_independent}, fge_members={config.fge_members}"
        )
    ds = load_logged(config, context)
    groups, costs = {}, {}

    with context.stage("pretrain"):
        nets, pretrain_costs = [], []
        for k in range(config.num_independent):
            net, cost = pretrained_cnn(k, ds, config, context)
            nets.append(net)
            pretrain_costs.append(cost)
            context.log(f"  net {k + 1}/{config.num_independent}: train CPU {cost['cpu_s']:.0f}s")
    costs[INDEPENDENT] = {"cpu_s": sum(c["cpu_s"] for c in pretrain_costs), "wall_s": sum(c["wall_s"] for c in pretrain_costs)}

    fge_groups = {}
    with context.stage("fge"):
        config, lr_choice = pretrained_fge_lr(nets[0], ds, config, context, seed=1000 * config.seed + 99)
        for run, members in enumerate(config.fge_members):
            label = f"FGE {run + 1}"
            fge_groups[label], cost = fge(nets[run], members, ds, config, seed=1000 * config.seed + 100 + run)
            pre = pretrain_costs[run]
            costs[label] = {"cpu_s": pre["cpu_s"] + cost["cpu_s"], "wall_s": pre["wall_s"] + cost["wall_s"], "snapshot_steps": cost["steps"]}
            context.log(f"  {label}: {members} members at steps {cost['steps']}, FGE CPU {cost['cpu_s']:.0f}s")

    with context.stage("snapshot_ensemble"):
        sse, cost = _snapshot_ensemble(ds, config)
        costs[SNAPSHOT] = {"cpu_s": cost["cpu_s"], "wall_s": cost["wall_s"], "snapshot_steps": cost["steps"], "total_steps": cost["total_steps"]}
        context.log(f"  {len(sse)} snapshots at steps {cost['steps']} of {cost['total_steps']}")

    all_groups = {**fge_groups, INDEPENDENT: nets, SNAPSHOT: sse}
    for g, (label, members) in enumerate(all_groups.items()):
        with context.stage(f"evaluate_{label.lower().replace(' ', '_')}"):
            groups[label] = _evaluate(members, ds, config, seed=1000 * config.seed + 300 + g)
            groups[label]["train_cpu_s"] = costs[label]["cpu_s"]
            groups[label]["train_wall_s"] = costs[label]["wall_s"]
            r = groups[label]
            context.log(
                f"  {label}: members {', '.join(f'{100 * a:.1f}' for a in r['member_accuracy'])}; softmax "
                f"{100 * r['softmax_vote']:.2f}%, SuperNet {100 * r['supernet']:.2f}%, agreement {r['mean_agreement']:.1f}%"
            )
    fge_labels = list(fge_groups)
    return {
        "groups": groups,
        "costs": costs,
        "fge_labels": fge_labels,
        "steps_per_epoch": steps_per_epoch(ds, config),
        "fge_cycle_steps": fge_cycle_steps(ds, config),
        **({"fge_lr_choice": lr_choice} if lr_choice else {}),
        "summary": {
            "fge_supernet_mean": float(np.mean([groups[l]["supernet"] for l in fge_labels])),
            "fge_supernet_max": float(np.max([groups[l]["supernet"] for l in fge_labels])),
            "fge_softmax_mean": float(np.mean([groups[l]["softmax_vote"] for l in fge_labels])),
            "fge_agreement_mean": float(np.mean([groups[l]["mean_agreement"] for l in fge_labels])),
            "fge_supernet_wins": int(sum(groups[l]["supernet"] > groups[l]["softmax_vote"] for l in fge_labels)),
        },
    }


# === Report ===


def _pct(value):
    return "—" if value is None else f"{100 * value:.2f}"


def report(records, out_dir):
    written = []
    for runs in by_preset(records):
        preset, n, config = runs.preset, runs.n, runs.config
        last = runs.runs[-1]["metrics"]
        labels = list(last["groups"])
        width = max(max(last["groups"][l]["num_members"] for l in labels), 5)

        def cell(label, field, scale=100, digits=2):
            return runs.cell(f"metrics.groups.{label}.{field}", scale, digits)

        rows = []
        for label in labels:
            k = last["groups"][label]["num_members"]
            member_values = np.array(
                [r["metrics"]["groups"][label]["member_accuracy"] for r in runs.runs if label in r["metrics"]["groups"]], dtype=float
            )
            member_cells = [
                reports.format_mean_std(member_values[:, i].mean(), member_values[:, i].std(ddof=1) if len(member_values) > 1 else None, len(member_values), scale=100)
                if i < k else "—"
                for i in range(width)
            ]
            rows.append(
                [f"{label} (ours)", str(k), *member_cells, cell(label, "supernet"), cell(label, "supernet_copied_head"), cell(label, "softmax_vote"),
                 cell(label, "majority_vote"), cell(label, "mean_agreement", 1, 1), cell(label, "train_cpu_s", 1, 0)]
            )
            thesis = THESIS.get(label)
            if thesis is not None:
                members = list(thesis["members"])
                rows.append(
                    [f"{label} (thesis)", str(len(members)), *[_pct(members[i]) if i < len(members) else "—" for i in range(width)],
                     _pct(thesis["supernet"]), "—", _pct(thesis["softmax"]), "—", "—", "—"]
                )
        table = reports.Table(
            title="Table 13: SuperNets of FGE snapshots vs of independent Table-2 nets on CIFAR-10",
            columns=["group", "K", *[f"{i + 1}'" for i in range(width)], "SuperNet", "SuperNet, copied head", "softmax voting", "majority voting", "mean agreement (%)", "train CPU (s)"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, mean ± std over {n} seed(s). Test accuracy (%) of each member, of the SuperNet "
                f"(copied head, automatic down-scaling, head re-trained {config['head_epochs']} epochs; and its copied head "
                "before re-training) and of voting. "
                f"FGE run r continues independent net r ({config['pretrain_epochs']} Adam epochs) with FGECyclic SGD "
                f"({fge_lr_text(config, runs.runs)}; cycle {config['fge_cycle_epochs']} epoch(s)); the "
                f"Snapshot Ensemble trains from scratch with SnapshotCosine (lr {config['snapshot_lr']}, "
                f"{config['snapshot_cycles']} cycles) for as many updates as pre-training plus a "
                f"{config['snapshot_cycles']}-member FGE run. Train CPU: process CPU seconds of the group's training "
                f"(FGE: its pre-training plus the FGE cycles). {CLAIMS_NOTE}"
            ),
            source="thesis Table 13 (validation accuracy; K and member columns as printed)",
            footnotes=_footnotes(config, runs.runs) + [_nll_note(runs, labels)],
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{preset}")

    return written


def _nll_note(runs, labels):
    """Test NLL of each group's re-trained SuperNet beside its softmax vote's."""
    cells = "; ".join(
        f"{label} {runs.cell(_group(label, 'supernet_nll'), digits=3)} vs {runs.cell(_group(label, 'softmax_vote_nll'), digits=3)}"
        for label in labels
    )
    return f"Test NLL, re-trained SuperNet vs softmax voting: {cells}."


def _footnotes(config, records):
    notes = bn_momentum_notes(config) + data_notes(
        config, generated="a code-path check, numbers are meaningless",
        subset="Training subset of {subset} CIFAR-10 images ({validation_size} held out for validation), test split scaled "
        "alike; the thesis uses the full 50000/10000 split",
    )
    notes.append(
        f"Pre-training {config['pretrain_epochs']} epochs with Adam (lr {config['pretrain_lr']}), batch {config['batch_size']}; "
        "the thesis does not state the FGE pre-training length or batch size."
    )
    notes.append(
        f"FGE hyper-parameters are not in the thesis; ours follow Garipov et al. 2018 for VGG-16 (SGD momentum "
        f"{config['fge_momentum']}, {fge_lr_text(config, records)}) with a cycle of "
        f"{config['fge_cycle_epochs']} epoch(s) (Garipov: 2-4 epochs of 391 steps)."
    )
    notes += bn_update_notes(config)
    notes.append("FGE run r starts from independent net r, which is itself a member of the independent group (saves training); the thesis does not say how its FGE groups were started.")
    notes.append("Accuracies are on the test split; the thesis reports validation accuracy (its validation set is CIFAR-10's test set).")
    notes.append("SuperNet head: down-scaling factor chosen by validation NLL (thesis: by hand), head re-trained on cached features with Adam.")
    notes.append(
        f"Snapshot Ensemble (not in the thesis): SGD momentum {config['snapshot_momentum']}, initial lr {config['snapshot_lr']} "
        "(Huang et al. use 0.1-0.2 for ResNets/DenseNets)."
    )
    return notes


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
