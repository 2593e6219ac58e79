"""Beyond the thesis: margin ("gap") and logit-normalised members vs cross-entropy members.

Source: Shokorov 2021 (MIPT, "Bootstrapping neural-network ensembles"),
slides on the logit gap `l_y - max_{i != y} l_i`: training with a gap,
`L_m = CE(l - m e_y, y)` (`supernet.losses.MarginCrossentropy`), is said to
raise training and test accuracy and widen the minimum; normalising the
logits (`supernet.losses.LogitNormCrossentropy`, CE on `l / (tau ||l||)`)
removes the "scale the logits up" escape and changes the gap histograms,
which the source plots for a plain and a normalised model.

Protocol: the same fused `PartitionedMLP` (K members, same initial
weights and batches) is trained three times on Fashion-MNIST, once per
loss. The members output softmax probabilities, so the losses read
log-probabilities: exact for the margin loss (CE is shift-invariant), and
for LogitNorm the centred log-probabilities, i.e. the logits projected to
zero mean (a documented variant of LogitNorm; see the loss's docstring).
On the test set: member and ensemble (softmax vote) accuracy, NLL,
calibrated NLL, and histograms of member 1's logit gaps
(`supernet.metrics.logit_margin` on its log-probabilities), raw and after
the same centring and normalisation (the source's right-hand column).

Presets:
- `smoke`: synthetic 784-dim data, tiny members, 1 epoch (seconds).
- `cpu`: full Fashion-MNIST, 4 members of 200-466-466 per loss, 5 epochs,
  margin 2, LogitNorm temperature 0.05. Measured here with one epoch per
  loss (2 cores shared with other runs, load ~6): a fused 4-member epoch
  46-51 s wall / 22 s CPU, scoring train and test sets 16-20 s wall / 6 s
  CPU per loss: ~6 min of CPU time per seed, ~13 min wall at that load.
- `paper`: 6 members, 20 epochs per loss.
"""

import dataclasses

import keras
import numpy as np

from supernet_lab.experiments._beyond import ensemble_scores, histogram_counts, member_probs, train_members
from supernet_lab.experiments._common import SMOKE_MEMBERS, MembersConfig, by_preset, load_dataset
from supernet_lab.findings import Claim
from supernet import metrics, reports
from supernet.losses import LogitNormCrossentropy, MarginCrossentropy, MemberwiseCrossentropy

NAME = "beyond_margin_loss"
DESCRIPTION = "Margin (gap) and LogitNorm members vs cross-entropy members: accuracy and logit-gap histograms"
REPRODUCES = "beyond the thesis: Shokorov 2021 (seed 004) gap slides"

VARIANTS = (("ce", "cross-entropy"), ("margin", "margin (gap) loss"), ("logit_norm", "LogitNorm"))
COLUMNS = (
    ("avg_member_accuracy", "mean member accuracy %", 100, 2),
    ("avg_member_train_accuracy", "mean member train accuracy %", 100, 2),
    ("accuracy", "ensemble accuracy %", 100, 2),
    ("avg_member_nll", "mean member NLL", 1, 4),
    ("nll", "ensemble NLL", 1, 4),
    ("calibrated_nll", "ensemble calibrated NLL", 1, 4),
    ("median_gap", "member 1 median gap", 1, 2),
    ("median_normalized_gap", "member 1 median normalised gap", 1, 3),
)

CLAIMS = tuple(
    Claim(
        f"margin_raises_{split}_accuracy",
        "Training networks with a gap (the loss L(l - m e_y, y)) raises accuracy on the training and test sets.",
        "Shokorov 2021, slide 'Training a network with a gap' (translated from Russian)",
        f"metrics.margin.{key}", minus=f"metrics.ce.{key}",
        label=f"margin - cross-entropy, mean member {split} accuracy", scale=100, unit=" points",
    )
    for split, key in (("test", "avg_member_accuracy"), ("train", "avg_member_train_accuracy"))
)


@dataclasses.dataclass(frozen=True)
class Config(MembersConfig):
    """The members' data and training (`MembersConfig`), shared by the three losses, and the losses' settings."""

    margin: float = 2.0
    logit_norm_temperature: float = 0.05
    # Fixed bins of the stored gap histograms (raw log-probability gaps, and
    # gaps of the centred, unit-norm log-probabilities).
    gap_range: tuple = (-15.0, 35.0)
    normalized_gap_range: tuple = (-1.5, 1.5)
    gap_bins: int = 100


PRESETS = {
    "smoke": Config(**SMOKE_MEMBERS),
    "cpu": Config(num_members=4, epochs=5),
    "paper": Config(),
}


def _loss(variant, config):
    if variant == "ce":
        return MemberwiseCrossentropy()
    if variant == "margin":
        return MarginCrossentropy(config.margin)
    return LogitNormCrossentropy(config.logit_norm_temperature, from_logits=False)


def _gaps(y, probs):
    """Raw and normalised logit gaps of one member's probabilities."""
    log_probs = np.log(np.clip(probs.astype(np.float64), 1e-12, 1.0))
    centred = log_probs - log_probs.mean(axis=1, keepdims=True)
    normalized = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    return metrics.logit_margin(y, log_probs), metrics.logit_margin(y, normalized)


def main(config, context):
    ds = load_dataset(config)
    context.log(ds.summary())
    edges = np.linspace(*config.gap_range, config.gap_bins + 1)
    normalized_edges = np.linspace(*config.normalized_gap_range, config.gap_bins + 1)
    result = {"gap_edges": edges.tolist(), "normalized_gap_edges": normalized_edges.tolist()}
    for variant, label in VARIANTS:
        with context.stage(f"train_{variant}"):
            keras.utils.set_random_seed(config.seed)  # same initial weights and batches for every loss
            model, _ = train_members(config, ds, context.log, loss=_loss(variant, config))
        with context.stage(f"evaluate_{variant}"):
            probs = member_probs(model, ds.x_test)
            train_probs = member_probs(model, ds.x_train)
            scores = ensemble_scores(ds.y_test, probs)
            scores["avg_member_train_accuracy"] = float(np.mean([metrics.accuracy(ds.y_train, p) for p in train_probs]))
            gaps, normalized = _gaps(ds.y_test, probs[0])
            scores.update(
                median_gap=float(np.median(gaps)),
                median_normalized_gap=float(np.median(normalized)),
                gap_hist=histogram_counts(gaps, edges),
                normalized_gap_hist=histogram_counts(normalized, normalized_edges),
            )
        result[variant] = scores
        context.log(
            f"  {label:18s} member acc {scores['avg_member_accuracy']:.4f} (train {scores['avg_member_train_accuracy']:.4f})  "
            f"ensemble acc {scores['accuracy']:.4f}  cNLL {scores['calibrated_nll']:.4f}  median gap {scores['median_gap']:.2f}"
        )
    return result


def report(records, out_dir):
    """Table per preset and the gap histograms of the first seed."""
    written = []
    out = out_dir / NAME
    for runs in by_preset(records):
        config, preset = runs.config, runs.preset
        rows = [[label] + [runs.cell(f"metrics.{v}.{key}", scale=s, digits=d) for key, _, s, d in COLUMNS] for v, label in VARIANTS]

        def delta(variant, key):
            return runs.mean(f"metrics.{variant}.{key}") - runs.mean(f"metrics.ce.{key}")

        finding = (
            f"Margin loss (m = {config['margin']}) vs cross-entropy: member test accuracy "
            f"{100 * delta('margin', 'avg_member_accuracy'):+.2f} points, train accuracy "
            f"{100 * delta('margin', 'avg_member_train_accuracy'):+.2f}, ensemble accuracy "
            f"{100 * delta('margin', 'accuracy'):+.2f}, median gap {delta('margin', 'median_gap'):+.2f}. "
            f"LogitNorm (tau = {config['logit_norm_temperature']}) vs cross-entropy: member accuracy "
            f"{100 * delta('logit_norm', 'avg_member_accuracy'):+.2f} points, ensemble calibrated NLL "
            f"{delta('logit_norm', 'calibrated_nll'):+.4f}; the claims table beside this one judges the margin loss's "
            "differences over the seeds."
        )
        table = reports.Table(
            title=f"Margin (gap) and LogitNorm members vs cross-entropy members, Fashion-MNIST ({preset})",
            columns=["loss"] + [c for _, c, _, _ in COLUMNS],
            rows=rows,
            caption=f"Preset `{preset}`, mean ± std over {runs.n} seed(s); {config['dataset']} test set (train accuracy on the training split). {finding}",
            footnotes=[
                f"{config['num_members']} members of {'-'.join(map(str, config['hidden_units']))}-C per loss, one fused "
                f"PartitionedMLP each, dropout {config['dropout']}, {config['epochs']} epochs, Adam lr "
                f"{config['learning_rate']}, batch {config['batch_size']}; same initial weights and batches for all losses.",
                "Gap = l_y - max_{i != y} l_i of member 1, on its log-probabilities (equal to the logits' gap); the "
                "normalised gap uses the centred log-probabilities divided by their norm.",
                "LogitNorm reads the centred log-probabilities of the softmax output (zero-mean logits), a variant of "
                "Wei et al. 2022 who normalise the raw logits.",
                "Not in the thesis; the source gives no margin value, m is ours.",
            ],
        )
        written += reports.write_table(table, out / f"{NAME}_{preset}")

        first = min(runs.runs, key=lambda r: r["seed"])["metrics"]
        for kind, edges_key, xlabel in (
            ("gap_hist", "gap_edges", "logit gap l_y - max_{i != y} l_i"),
            ("normalized_gap_hist", "normalized_gap_edges", "gap of the centred, unit-norm logits"),
        ):
            written.append(
                reports.plot_histogram_counts(
                    {label: first[v][kind] for v, label in VARIANTS},
                    first[edges_key],
                    out / f"{NAME}_{preset}_{kind}.png",
                    title=f"Member 1 test-set {'normalised ' if kind.startswith('normalized') else ''}logit gaps ({preset})",
                    xlabel=xlabel,
                    marker=0.0,
                )
            )
    return written


if __name__ == "__main__":
    from supernet_lab.cli import main_module

    main_module(NAME)
