"""Thesis Table 6: initialising and regularising the SuperModel's softmax head.

Reproduces section 3.3's comparison of last-layer initialisations on two
datasets. Six sub-models are trained once per dataset as one fused
`PartitionedMLP` (Fashion-MNIST: 6 x 200-466-466-10; 20 Newsgroups on TF-IDF:
6 x 30-30-20) and reused for twelve heads:
{random, copied (f = 1), copied + down-scaled by a hand-picked factor f,
copied + `downscale="auto"` (f fitted on validation NLL)} x
{no regularisation, L2 0.01, L2 0.001}. Each head is trained for
`head_epochs` on features computed once (`fit_head(on_features=True)`).

The trained members are kept in the run folder (`models/`); `--set
reuse_models=<run folder>` trains heads on them again without re-training
them, e.g. to try other head settings.

Held-out heads (ours; stacking, Wolpert 1992). With `head_data="holdout"` a
stratified, seeded `head_holdout_size` of each training set is held out
(`supernet.data.holdout_split`); the members train on the rest and the twelve
heads are re-trained on the held-out part, whose member predictions are as
confident as on new data. Two heads of the thesis's protocol (copied +
down-scaled by hand or by `"auto"`, no regularisation) are also re-trained on
the members' own training set, so that the two protocols are compared on the
same members (`metrics.<dataset>.train_set_heads`).

Reported per head, as the thesis's "validation accuracy / validation error
for the best score": the epoch with the highest validation accuracy
(first one on ties, epochs 1..head_epochs), its validation accuracy and its
validation loss as Keras reports it, with the head's L2 penalty
(`val_loss_keras`, the thesis's `val_loss`), plus, as ours, the pure
cross-entropy (`val_nll`) and the test accuracy at that epoch.

Presets:
- `smoke`: synthetic 784-dim / 300-dim (20 classes) data, tiny members,
  held-out heads.
- `cpu`: full Fashion-MNIST (54k/6k/10k) and 20 Newsgroups (10182/1132/7532,
  TF-IDF 10000 words), thesis architectures; members capped at 3 (F-MNIST)
  and 5 (TNG) epochs, heads at 3 (F-MNIST) and 5 (TNG) epochs instead of
  ~20. Measured on this machine (2 shared cores, under load): fused
  6 x 200-466-466 epoch 24 s wall / 21 s CPU; one head epoch on the 2796
  cached F-MNIST features 4.4 s wall / 1.6 s CPU; 6 x 30-30 TNG epoch
  6.7 s wall; TNG head epoch 0.9 s; TF-IDF loading 19 s. One seed is
  ~5 min wall (two datasets, 24 heads), above the ~4 min target.
- `paper`: members up to 100 epochs with early stopping (patience 10/5),
  heads 20 epochs. Timed on this machine: one fused 6 x 200-466-466 epoch
  ~20 s wall alone (2 threads), one F-MNIST head epoch ~3.5 s. Recorded:
  seeds 0-2 beside other runs, 1,605-1,905 CPU-s, 45-56 min
  wall (seeds 0 and 1: F-MNIST members 23 min, early stopping near epoch 45;
  12 heads 20 min; TNG members 6 min; TNG heads 4 min); seeds 3-7, two at a
  time with one thread each, 1,052-1,237 CPU-s, 21-25 min wall.
- `paper_holdout`: `paper` with held-out heads (10% of each training set);
  the members see 10% less data and the heads ~9x fewer examples
  (recorded: 854-1,049 CPU-s, 17-24 min wall beside another run; seeds 3
  and 4 on a slower AMD EPYC host with a 115 GFLOP/s fp32 matmul peak:
  2,041-2,137 CPU-s, 40-41 min wall beside another run).
- `paper_tng_50k` (ours): the `paper` protocol on 20 Newsgroups alone, with
  TF-IDF over the 50,000 most frequent words instead of 10,000 (the thesis
  does not state its vectorisation), to read the 85% on the official test
  set with a richer input. Timed on a host with a 123 GFLOP/s peak, beside
  two other runs: loading 20 CPU-s, one member epoch ~54 CPU-s (8x the
  10,000-word epoch), a head epoch ~1 s; the dense inputs need ~11 GB of
  memory, so run one seed at a time. Recorded there: seed 0 beside one to
  three other runs, members stopped at epoch 35, 1,637 CPU-s, 41 min wall;
  seeds 1 and 2 beside one other run, members stopped at epochs 38 and 43,
  1,536-1,698 CPU-s, 28-32 min wall.
"""

import dataclasses

import keras
import numpy as np

from supernet_lab.experiments._beyond import member_probs
from supernet_lab.experiments._common import by_preset, holdout_head_claims
from supernet import data, metrics, reports, training
from supernet.callbacks import EpochScores
from supernet.models import PartitionedMLP, build_supernet, fit_head, supernet_features
from supernet.models.supernet import HEAD_NAME
from supernet_lab.findings import Claim

NAME = "table6_head_init"
DESCRIPTION = "SuperModel head init (random / copied / down-scaled / auto) x L2, on F-MNIST and 20 Newsgroups"
REPRODUCES = "thesis Table 6"

INITS = (
    ("random", "random init"),
    ("copy", "copied, not scaled (f = 1)"),
    ("copy_hand", "copied, down-scaled by hand"),
    ("copy_auto", "copied, auto down-scale"),
)
# Thesis Table 6, (val acc, val loss); "downscaled" is the hand-picked factor.
THESIS = {
    "fmnist": {
        "none": {"random": (0.9122, 0.6401), "copy_hand": (0.9132, 0.7633), "copy": (0.9112, 1.1066)},
        "l2_0p01": {"random": (0.9105, 0.4187), "copy_hand": (0.9088, 0.4295), "copy": (0.9089, 0.5079)},
        "l2_0p001": {"random": (0.9113, 0.5207), "copy_hand": (0.9102, 0.5599), "copy": (0.9105, 0.5705)},
    },
    "tng": {
        "none": {"random": (0.8385, 0.9216), "copy_hand": (0.8502, 0.6651), "copy": (0.8458, 1.3965)},
        "l2_0p01": {"random": (0.8424, 0.6988), "copy_hand": (0.8484, 0.6433), "copy": (0.8410, 0.7225)},
        "l2_0p001": {"random": (0.8429, 0.8208), "copy_hand": (0.8497, 0.6678), "copy": (0.8467, 1.4009)},
    },
}
DATASET_LABELS = {"fmnist": "Fashion-MNIST", "tng": "20 Newsgroups"}
SHORT_LABELS = {"fmnist": "F-MNIST", "tng": "TNG"}
OUTPUTS = {"fmnist": 10, "tng": 20}
REAL_DATASETS = {"fmnist": "fashion_mnist", "tng": "newsgroups20"}


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    # Stage 1: Fashion-MNIST.
    fmnist_dataset: str = "fashion_mnist"
    fmnist_dataset_kwargs: tuple = ()
    fmnist_validation_size: object = 6000
    fmnist_hidden_units: tuple = (200, 466, 466)
    fmnist_dropout: float = 0.3
    fmnist_epochs: int = 100
    fmnist_patience: object = 10
    fmnist_head_epochs: int = 20
    # Stage 2: 20 Newsgroups (TF-IDF).
    tng_dataset: str = "newsgroups20"
    tng_dataset_kwargs: tuple = (("max_features", 10000),)
    tng_validation_size: object = 0.1
    tng_hidden_units: tuple = (30, 30)
    tng_dropout: float = 0.5
    tng_epochs: int = 100
    tng_patience: object = 5
    tng_head_epochs: int = 20
    # Shared.
    # Which of the two datasets to run, a subset of ("fmnist", "tng").
    stages: tuple = ("fmnist", "tng")
    subset: object = None
    num_members: int = 6
    batch_size: int = 128
    learning_rate: float = 1e-3
    head_batch_size: int = 128
    head_learning_rate: float = 1e-3
    hand_downscale: float = 6.0
    head_l2s: tuple = (0.0, 0.01, 0.001)
    # "train": heads re-trained on the members' training set (the thesis's
    # protocol); "holdout": on a held-out `head_holdout_size` (fraction or
    # count) of it that the members do not train on.
    head_data: str = "train"
    head_holdout_size: object = 0.1
    # An earlier run's folder (e.g. out/runs/table6_head_init/paper-seed0): its
    # trained members are loaded instead of trained, to try head variants.
    reuse_models: str = ""


def _smoke(tag, num_classes, input_dim, hidden_units):
    """Smoke settings of one dataset: synthetic data of its shape, tiny members, one epoch."""
    kwargs = (("num_classes", num_classes), ("input_shape", (input_dim,)), ("num_train", 400), ("num_test", 100))
    settings = dict(dataset="synthetic", dataset_kwargs=kwargs, validation_size=0.2, hidden_units=hidden_units, epochs=1,
                    patience=None, head_epochs=1)
    return {f"{tag}_{key}": value for key, value in settings.items()}


PRESETS = {
    # All three head regularisations (the default) and held-out heads, so that every claim's metrics are recorded.
    "smoke": Config(**_smoke("fmnist", 10, 784, (8, 12, 12)), **_smoke("tng", 20, 300, (6, 6)), head_data="holdout",
                    head_holdout_size=0.25),
    "cpu": Config(fmnist_epochs=3, fmnist_head_epochs=3, tng_epochs=5, tng_head_epochs=5),
    "paper": Config(),
    "paper_holdout": Config(head_data="holdout"),
    # Ours: 20 Newsgroups alone, TF-IDF over the 50,000 most frequent words.
    "paper_tng_50k": Config(stages=("tng",), tng_dataset_kwargs=(("max_features", 50000),)),
}

# The thesis's Table 6 claims as pairwise comparisons of two heads trained on
# the same members of one run (validation cross-entropy or accuracy at the
# head epoch with the best validation accuracy, as in the table); "copy_hand"
# is the thesis's "copied, downscaled" column. "Copied, not scaled has the
# worst loss" is: above random init and above copied + down-scaled in every
# regularisation row, and, without regularisation, above both L2 rows; "the
# highest score achieves copied, down-scaled, non-regularised" is: above its
# row and column neighbours.
_REGS = {"none": "no regularisation", "l2_0p01": "L2 0.01", "l2_0p001": "L2 0.001"}
_RESCALED = "The SuperModel's weights were rescaled before training, because it reduces the loss."
_WORST_LOSS = "The worst loss achieves the non-regularized weights directly copied from the submodels."
_BEST_SCORE = (
    "The highest score (accuracy and loss) achieves the non-regularized training of the last layer on which the "
    "coefficients were copied and down-scaled."
)


def _head(tag, init, reg, metric):
    return f"metrics.{tag}.heads.{init}.{reg}.{metric}"


def _paired(tag, claim_id, text, where, first, second, metric, label, compare=">"):
    """Claim that head `first` minus head `second` (each `(init, reg)`) on `metric` is `compare` 0.

    The thesis's difference of the same Table 6 cells is its source value;
    `label` follows the dataset's name.
    """
    column = 0 if metric == "val_accuracy" else 1
    return Claim(
        f"{tag}_{claim_id}", text, where, _head(tag, *first, metric), compare=compare, minus=_head(tag, *second, metric),
        source_value=round(THESIS[tag][first[1]][first[0]][column] - THESIS[tag][second[1]][second[0]][column], 6),
        label=f"{DATASET_LABELS[tag]}{label}", datasets=(f"{tag}_dataset",),
        **(dict(scale=100, unit=" points") if column == 0 else {}),
    )


CLAIMS = tuple(
    claim
    for tag in ("fmnist", "tng")
    for claim in (
        *(
            _paired(tag, f"{reg}_downscaling_lowers_loss", _RESCALED, "thesis sections 3.3 and 3.5, Table 6",
                    ("copy_hand", reg), ("copy", reg), "val_loss_keras",
                    f", {_REGS[reg]}: copied + down-scaled - copied, not scaled, val loss", compare="<")
            for reg in _REGS
        ),
        *(
            _paired(tag, f"{reg}_copied_loss_above_random", _WORST_LOSS, "thesis Table 6 caption",
                    ("copy", reg), ("random", reg), "val_loss_keras", f", {_REGS[reg]}: copied, not scaled - random init, val loss")
            for reg in _REGS
        ),
        *(
            _paired(tag, f"copied_loss_none_above_{reg}", _WORST_LOSS, "thesis Table 6 caption",
                    ("copy", "none"), ("copy", reg), "val_loss_keras",
                    f", copied, not scaled: no regularisation - {_REGS[reg]}, val loss")
            for reg in ("l2_0p01", "l2_0p001")
        ),
        *(
            _paired(tag, f"downscaled_accuracy_above_{init}_{reg}", _BEST_SCORE, "thesis section 3.3, Table 6",
                    ("copy_hand", "none"), (init, reg), "val_accuracy",
                    f": copied + down-scaled, no regularisation - {dict(INITS)[init]}, {_REGS[reg]}, val accuracy")
            for init, reg in (("random", "none"), ("copy", "none"), ("copy_hand", "l2_0p01"), ("copy_hand", "l2_0p001"))
        ),
        Claim(
            f"{tag}_downscaled_reaches_{dict(fmnist=91, tng=85)[tag]}",
            "We did not manage to achieve the same result [as the SuperModel] of 85% on TNG dataset and 91% on "
            "F-MNIST with the classical model of any size.",
            "thesis section 3.5, Table 6",
            _head(tag, "copy_hand", "none", "val_accuracy"),
            threshold=dict(fmnist=0.91, tng=0.85)[tag],
            source_value=THESIS[tag]["none"]["copy_hand"][0],
            label=f"{DATASET_LABELS[tag]}: copied + down-scaled head, no regularisation, val accuracy",
            scale=100,
            unit="%",
            datasets=(f"{tag}_dataset",),
        ),
        # Held-out presets only (they alone store `train_set_heads`).
        *(
            claim
            for init in ("copy_hand", "copy_auto")
            for claim in holdout_head_claims(
                f"{tag}_holdout_{init}", lambda m, init=init, tag=tag: _head(tag, init, "none", m),
                lambda m, init=init, tag=tag: f"metrics.{tag}.train_set_heads.{init}.none.{m}",
                f"{DATASET_LABELS[tag]}, {dict(INITS)[init]}, no regularisation", accuracy="val_accuracy",
                nll="val_nll", datasets=(f"{tag}_dataset",),
            )
        ),
    )
)

# The 85% on 20 Newsgroups, read on the official test set as well.
CLAIMS += (
    Claim(
        "tng_downscaled_reaches_85_on_test",
        "The same 85% on TNG, on the official test set (ours: the thesis does not say which posts it validated on; "
        "our validation posts are a random 10% of the training posts, the official test posts are later ones).",
        "thesis section 3.5, Table 6",
        _head("tng", "copy_hand", "none", "test_accuracy"),
        threshold=0.85,
        source_value=THESIS["tng"]["none"]["copy_hand"][0],
        label=f"{DATASET_LABELS['tng']}: copied + down-scaled head, no regularisation, official test accuracy",
        scale=100,
        unit="%",
        datasets=("tng_dataset",),
    ),
)


def _reg_key(l2):
    return "none" if l2 == 0 else f"l2_{l2:g}".replace(".", "p")


def _reg_label(l2):
    return "no regularisation" if l2 == 0 else f"L2 {l2:g}"


def _train_head(supernet, train, val, test, *, epochs, batch_size, learning_rate):
    """`fit_head` on features computed once for all heads of the same members.

    Returns the head's per-epoch curves and its scores before training.
    """
    before = keras.ops.convert_to_numpy(supernet.get_layer(HEAD_NAME)(val[0])).astype("float64")
    scores = EpochScores({"val": val, "test": test})
    history = fit_head(
        supernet, *train, validation_data=val, on_features=True, epochs=epochs, batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate), callbacks=[scores], verbose=0,
    )
    curves = dict(scores.curves)
    curves["val_loss_keras"] = [float(v) for v in history.history["val_loss"]]
    best = int(np.argmax(curves["val_accuracy"]))
    return {
        "best_epoch": best + 1,
        "val_accuracy": curves["val_accuracy"][best],
        "val_nll": curves["val_nll"][best],
        "val_loss_keras": curves["val_loss_keras"][best],
        "test_accuracy": curves["test_accuracy"][best],
        "min_val_nll": float(np.min(curves["val_nll"])),
        "initial_val_accuracy": metrics.accuracy(val[1], before),
        "initial_val_nll": metrics.nll(val[1], before),
        "curves": curves,
    }


def _stage(tag, config, context):
    dataset = getattr(config, f"{tag}_dataset")
    ds = None
    with context.stage(f"load_{tag}"):
        ds = data.load(
            dataset,
            validation_size=getattr(config, f"{tag}_validation_size"),
            subset=config.subset,
            seed=config.seed,
            **dict(getattr(config, f"{tag}_dataset_kwargs")),
        )
    held_out = None
    if config.head_data == "holdout":
        ds, held_out = data.holdout_split(ds, config.head_holdout_size, seed=config.seed)
    context.log(ds.summary())
    if held_out is not None:
        context.log(f"heads re-trained on {len(held_out[1])} held-out training examples the members do not see")

    def train():
        model = PartitionedMLP(
            ds.input_shape[0],
            list(getattr(config, f"{tag}_hidden_units")),
            ds.num_classes,
            num_members=config.num_members,
            dropout=getattr(config, f"{tag}_dropout"),
            seed=config.seed,
        )
        fit = training.fit_members(
            model,
            ds,
            epochs=getattr(config, f"{tag}_epochs"),
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            patience=getattr(config, f"{tag}_patience"),
            log=context.log,
        )
        return model, {"epochs_run": len(fit["history"]["loss"]), "best_epochs": fit.get("best_epochs")}

    with context.stage(f"train_members_{tag}"):
        model, fit = context.trained_model(f"members_{tag}", train, data={"train_examples": len(ds.x_train)})
        val_members = member_probs(model, ds.x_val)
        members = {
            "val_accuracy_avg": float(np.mean([metrics.accuracy(ds.y_val, p) for p in val_members])),
            "val_nll_avg": float(np.mean([metrics.nll(ds.y_val, p) for p in val_members])),
            "vote_val_accuracy": metrics.accuracy(ds.y_val, val_members.mean(0)),
            **fit,
        }
        context.log(
            f"  members: avg val acc {members['val_accuracy_avg']:.4f}, vote {members['vote_val_accuracy']:.4f}"
        )

    with context.stage(f"features_{tag}"):
        reference = build_supernet(model, init="random", seed=config.seed)
        features = supernet_features(reference)
        members_train = (features.predict(ds.x_train, verbose=0, batch_size=1024), ds.y_train)
        train = members_train if held_out is None else (features.predict(held_out[0], verbose=0, batch_size=1024), held_out[1])
        val = (features.predict(ds.x_val, verbose=0, batch_size=1024), ds.y_val)
        test = (features.predict(ds.x_test, verbose=0, batch_size=1024), ds.y_test)

    def head(init, l2, head_train):
        kwargs = {"init": "random" if init == "random" else "copy", "l2": l2, "seed": config.seed}
        if init == "copy_hand":
            kwargs["downscale"] = config.hand_downscale
        elif init == "copy_auto":
            kwargs.update(downscale="auto", validation_data=(ds.x_val, ds.y_val))
        supernet = build_supernet(model, **kwargs)
        result = _train_head(
            supernet, head_train, val, test, epochs=getattr(config, f"{tag}_head_epochs"),
            batch_size=config.head_batch_size, learning_rate=config.head_learning_rate,
        )
        result["downscale"] = supernet.supernet_info["downscale"]
        context.log(
            f"  {init:9s} {_reg_label(l2):17s}: best val acc {result['val_accuracy']:.4f} "
            f"(epoch {result['best_epoch']}), val NLL {result['val_nll']:.4f}, f={result['downscale']:.3g}"
        )
        return result

    with context.stage(f"heads_{tag}"):
        heads = {init: {_reg_key(l2): head(init, l2, train) for l2 in config.head_l2s} for init, _ in INITS}
    result = {
        "members": members,
        "heads": heads,
        "auto_downscale": heads["copy_auto"][_reg_key(config.head_l2s[-1])]["downscale"],
        "head_data": {"protocol": config.head_data, "members_train": len(ds.x_train), "head_train": len(train[1])},
    }
    if held_out is not None:
        with context.stage(f"train_set_heads_{tag}"):
            context.log("  the same members, heads re-trained on their own training set (thesis protocol):")
            result["train_set_heads"] = {init: {"none": head(init, 0.0, members_train)} for init in ("copy_hand", "copy_auto")}
    return result


def main(config, context):
    if config.head_data not in ("train", "holdout"):
        raise ValueError(f"Argument `head_data` must be 'train' or 'holdout'. Received: head_data={config.head_data!r}")
    stages = tuple(config.stages)
    if not stages or set(stages) - set(DATASET_LABELS):
        raise ValueError(
            f"Argument `stages` must be a non-empty subset of {tuple(DATASET_LABELS)}. Received: stages={config.stages!r}"
        )
    # One resumable unit per dataset: a killed run skips a finished dataset.
    return {tag: context.resumable(tag, lambda tag=tag: _stage(tag, config, context)) for tag in stages}


def report(records, out_dir):
    """Table 6 per preset, ours beside the thesis."""
    written = []
    for runs in by_preset(records):
        config, preset, n = runs.config, runs.preset, runs.n

        def cell(path, digits=4):
            return runs.cell(path, digits=digits)

        rows = []
        for l2 in config["head_l2s"]:
            reg = _reg_key(l2)
            for init, label in INITS:
                row = [_reg_label(l2), label]
                for tag in ("fmnist", "tng"):
                    row.append(f"{cell(_head(tag, init, reg, 'val_accuracy'))} / {cell(_head(tag, init, reg, 'val_loss_keras'))}")
                    thesis = THESIS[tag].get(reg, {}).get(init)
                    row.append(f"{thesis[0]:.4f} / {thesis[1]:.4f}" if thesis else "—")
                rows.append(row + [cell(_head(tag, init, reg, "val_nll")) for tag in ("fmnist", "tng")])

        def members(tag, outputs):
            units = "-".join(map(str, config[f"{tag}_hidden_units"]))
            return f"{config['num_members']} x {units}-{outputs}: avg val acc {cell(f'metrics.{tag}.members.val_accuracy_avg')}"

        def head_time(tag):
            return f"wall {cell(f'timings.heads_{tag}.wall_s', 1)} s / CPU {cell(f'timings.heads_{tag}.cpu_s', 1)} s"

        stages = config.get("stages", tuple(DATASET_LABELS))

        def each(value, sep, labelled="{value} ({label})"):
            """`value(tag)` of every dataset the preset runs, joined by `sep`."""
            return sep.join(labelled.format(value=value(tag), label=SHORT_LABELS[tag]) for tag in stages)

        only = (
            f" This preset runs {' and '.join(DATASET_LABELS[tag] for tag in stages)} only."
            if set(stages) != set(DATASET_LABELS) else ""
        )
        holdout = config.get("head_data", "train") == "holdout"
        protocol = (
            f" Heads re-trained on a held-out {config['head_holdout_size']} of each training set that the members did "
            f"not train on ({each(lambda tag: cell(f'metrics.{tag}.head_data.head_train', 0), ', ', '{label} {value} examples')}; "
            "stacking, ours), not on the members' training set as in the thesis."
            if holdout else ""
        )

        table = reports.Table(
            title=f"Table 6: SuperModel last-layer initialisation and L2, best validation accuracy / validation loss ({preset})",
            columns=["head regularisation", "head initialisation", "F-MNIST (ours)", "F-MNIST (thesis)", "TNG (ours)",
                     "TNG (thesis)", "F-MNIST NLL (ours)", "TNG NLL (ours)"],
            rows=rows,
            caption=(
                f"Preset `{preset}`, mean ± std over {n} seed(s). Cell = validation accuracy / validation "
                f"loss as Keras reports it (cross-entropy plus the head's L2 penalty, the thesis's `val_loss`) at the "
                f"head epoch with the best validation accuracy; the last two columns (ours) give the pure "
                f"cross-entropy at that epoch. Members ({each(lambda tag: members(tag, OUTPUTS[tag]), '; ', '{label} {value}')}) "
                f"are trained once per dataset and shared by all 12 heads. Auto down-scaling chose "
                f"{each(lambda tag: cell(f'metrics.{tag}.auto_downscale', 2), ' and ', 'f = {value} ({label})')}. "
                f"Head training, all 12 heads: {each(head_time, ', ', '{label} {value}')}.{protocol}{only}"
            ),
            source="thesis Table 6",
            footnotes=[
                "Best validation accuracy = max over head epochs 1..E (first on ties); the loss at that epoch includes "
                "the L2 penalty, as Keras's `val_loss` (which the thesis reports) does. The NLL columns are the "
                "cross-entropy alone, from the float32 probabilities clipped at 1e-12; Keras computes its loss from "
                "the logits, so where an overconfident head gives the true class a probability below 1e-12 its loss "
                "is higher even without a penalty.",
                f"Heads trained {each(lambda tag: config[f'{tag}_head_epochs'], ' / ')} epochs "
                f"(thesis: about 20), fresh Adam lr {config['head_learning_rate']}, batch {config['head_batch_size']}, "
                "on features computed once.",
                f"Members trained at most {each(lambda tag: config[f'{tag}_epochs'], ' / ')} epochs "
                f"with per-member early stopping (patience {each(lambda tag: config[f'{tag}_patience'], ' / ', '{value}')}); "
                f"dropout {each(lambda tag: config[f'{tag}_dropout'], ' / ', '{value}')} (our choice; not stated for Table 6).",
                f"Hand down-scaling factor f = {config['hand_downscale']:g}{' for both datasets' if len(stages) > 1 else ''} "
                "(= the number of sub-networks); the thesis chose its factors experimentally per model (sometimes about "
                "60) and does not state them.",
                "Auto down-scaling: f minimises the validation NLL of the copied head before training (a fitted "
                "temperature); not in the thesis.",
                *(
                    [f"Stand-in data: {each(lambda tag: config[f'{tag}_dataset'], ' / ', '`{value}`')} instead of "
                     f"{' / '.join(DATASET_LABELS[tag] for tag in stages)}."]
                    if any(config[f"{tag}_dataset"] != REAL_DATASETS[tag] for tag in stages) else []
                ),
                *(
                    [f"20 Newsgroups as TF-IDF of the {dict(config['tng_dataset_kwargs']).get('max_features', 10000)} "
                     "most frequent words (thesis: vectorisation not stated); the thesis's '30, 30 and 10 neurons' has "
                     "20 outputs here (20 classes)."]
                    if "tng" in stages and config["tng_dataset"] == REAL_DATASETS["tng"] else []
                ),
            ],
        )
        written += reports.write_table(table, out_dir / NAME / f"{NAME}_{preset}")
        if holdout:
            written += reports.write_table(_protocol_table(runs), out_dir / NAME / f"{NAME}_{preset}_head_data")
    return written


def _protocol_table(runs):
    """Held-out heads beside heads of the thesis's protocol (re-trained on the members' training set), same members."""
    rows = []
    for tag in ("fmnist", "tng"):
        for init in ("copy_hand", "copy_auto"):
            for key, protocol in (("heads", "held-out"), ("train_set_heads", "members' training set (thesis)")):
                path = f"metrics.{tag}.{key}.{init}.none"
                rows.append([DATASET_LABELS[tag], dict(INITS)[init], protocol]
                            + [runs.cell(f"{path}.{m}", digits=4) for m in ("val_accuracy", "val_nll", "test_accuracy")])
    return reports.Table(
        title=f"Table 6, heads re-trained on held-out data vs on the members' training set ({runs.preset})",
        columns=["dataset", "head initialisation", "head trained on", "val acc", "val NLL", "test acc"],
        rows=rows,
        caption=(
            f"Preset `{runs.preset}`, mean ± std over {runs.n} seed(s); no head regularisation; both heads of a row pair "
            "sit on the same members and are scored at their epoch of best validation accuracy. The claims table "
            "judges the paired differences over the seeds."
        ),
        source="ours (stacking, Wolpert 1992); the thesis re-trains heads on the members' training set",
    )


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
