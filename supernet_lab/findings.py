"""Findings: a source's claims declared as data, judged over the stored seeds.

An experiment declares each claim it tests once, as a `Claim`: the claim in
the source's words, where the source makes it, the quantity that tests it (a
metric of one run, or the per-seed difference of two metrics of the same run),
the value the claim compares it with and the source's own number. `judge`
turns a claim and the records of one preset into a `Finding`: our estimate,
a 95% interval over seeds, the number of seeds and a verdict.

The statistics. Seeds are independent repetitions of the whole run, so the
interval is Student's t-interval of the per-seed values, `mean +- t(0.975,
n - 1) * sd / sqrt(n)`. When a claim compares two methods that share a seed
(same data split, same members), the per-seed values are the differences and
the interval is the paired t-interval, which removes the seed-to-seed
variation the two methods share. The verdict:

- **holds**: the whole interval lies on the claim's side of its value;
- **fails**: the whole interval lies on the other side (the interval
  excludes the claim);
- **inconclusive**: the interval straddles the value, or fewer than two
  seeds (no interval can be formed);
- **not judged**: smoke or synthetic-data runs, which test the code, not the
  claim.

With two or three seeds the t quantile is large (12.7 and 4.3), so small
effects stay inconclusive until more seeds are recorded: "too small to
tell", not "fails".
"""

import dataclasses
import math

from supernet.reports import get_path

HOLDS, FAILS, INCONCLUSIVE, NOT_JUDGED = "holds", "fails", "inconclusive", "not judged"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_JUDGED)
COMPARISONS = (">", "<")
CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of a source and the measurement that tests it.

    Args:
        id: short stable key, unique within the experiment, e.g. `"larger_beats_mlp"`.
        text: the claim, in the source's words where possible.
        where: where the source states it, e.g. `"thesis Table 8"`.
        value: dotted path of the measured metric in a record, e.g.
            `"metrics.fmnist.supermodel.test_accuracy"`. A `*` part matches
            every key (or list index) at its level, and the metric is then the
            mean over the matches, e.g. `"metrics.grid.*.sse.accuracy"`.
        minus: optional dotted path (`*` allowed) of a second metric of the
            same record; the per-seed value is then `value - minus` (a paired
            comparison).
        compare: `">"` (the claim is that the quantity exceeds `threshold`)
            or `"<"`.
        threshold: the number the quantity is compared with (0 for a paired
            difference, the source's value for "reaches X").
        source_value: the source's number for the same quantity, or None.
        label: what the quantity is, for tables, e.g.
            `"SuperModel - classical MLP, test accuracy"`.
        scale: display factor (100 shows fractions as percent or points).
        unit: display unit after the scaled numbers, e.g. `"%"` or `" points"`.
        datasets: config fields naming the datasets the claim reads; a run
            whose dataset is `"synthetic"` is not judged.
    """

    id: str
    text: str
    where: str
    value: str
    compare: str = ">"
    threshold: float = 0.0
    minus: str = None
    source_value: float = None
    label: str = ""
    scale: float = 1.0
    unit: str = ""
    datasets: tuple = ("dataset",)

    def __post_init__(self):
        if self.compare not in COMPARISONS:
            raise ValueError(f"Argument `compare` must be one of {COMPARISONS}. Received: compare={self.compare!r}")
        if not self.id or not self.text or not self.value:
            raise ValueError(f"A claim needs an `id`, a `text` and a `value` path. Received: {self!r}")

    def measure(self, record):
        """The claim's quantity in one record, or None where a metric is missing."""
        first = _mean_at(record, self.value)
        second = 0.0 if self.minus is None else _mean_at(record, self.minus)
        if first is None or second is None:
            return None
        return first - second


def _matches(node, parts):
    """The values at the dotted `parts` below `node`; a `*` part branches into every child."""
    if not parts:
        return [node]
    head, rest = parts[0], parts[1:]
    if head != "*":
        child = get_path(node, head)
        return [] if child is None else _matches(child, rest)
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return [value for child in children for value in _matches(child, rest)]


def _mean_at(record, dotted):
    """The value at `dotted`, or the mean of the values its `*` parts match; None where nothing is found."""
    values = [float(v) for v in _matches(record, dotted.split(".")) if v is not None]
    return math.fsum(values) / len(values) if values else None


@dataclasses.dataclass(frozen=True)
class Finding:
    """A claim judged over the seeds of one preset."""

    experiment: str
    preset: str
    claim: Claim
    verdict: str
    n: int
    estimate: float = None
    low: float = None
    high: float = None
    values: tuple = ()
    seeds: tuple = ()

    def as_dict(self):
        """JSON-ready: the judgement with the claim's fields nested under `claim`."""
        return dataclasses.asdict(self)

    def evidence(self):
        """What was measured, signed: e.g. `A - B: +1.49 points, 95% interval [+0.62, +2.36], 3 seeds; claim > +0.00`."""
        claim = self.claim
        if self.estimate is None:
            return "no stored value"
        signed = claim.minus is not None
        evidence = format_number(claim, self.estimate, signed)
        if self.low is not None:
            evidence += f", 95% interval [{format_number(claim, self.low, signed)}, {format_number(claim, self.high, signed)}]"
        evidence += f", {self.n} seed{'s' if self.n != 1 else ''}"
        label = f"{claim.label}: " if claim.label else ""
        side = f"claim {claim.compare} {format_number(claim, claim.threshold, signed)}"
        source = "" if claim.source_value is None else f"; source: {format_number(claim, claim.source_value)}"
        return f"{label}{evidence}; {side}{source}"

    def sentence(self):
        """The claim, where the source makes it, the verdict and the evidence, in one sentence."""
        return f"{self.claim.text} ({self.claim.where}): **{self.verdict}** ({self.evidence()})."


def format_number(claim, value, signed=False):
    """`value` in the claim's display scale and unit, with its sign when `signed`.

    Two decimals from 1 up (one from 100), three significant digits below 1,
    so that small loss differences do not print as 0.00.
    """
    scaled = value * claim.scale
    sign = "+" if signed else ""
    if abs(scaled) >= 1 or scaled == 0:
        text = f"{scaled:{sign}.{1 if abs(scaled) >= 100 else 2}f}"
    else:
        text = f"{scaled:{sign}.3g}"
    return text + claim.unit


def t_interval(values, confidence=CONFIDENCE):
    """Mean and Student's t-interval of `values`; `(mean, None, None)` for one value.

    Example:

    >>> mean, low, high = t_interval([1.0, 2.0, 3.0])
    >>> round(mean, 3), round(low, 3), round(high, 3)
    (2.0, -0.484, 4.484)
    """
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("Argument `values` must not be empty.")
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def is_judged(preset, records, claim):
    """False for smoke runs and for runs on synthetic data: they test code, not claims."""
    if preset == "smoke":
        return False
    for record in records:
        config = record.get("config") or {}
        if any(config.get(field) == "synthetic" for field in claim.datasets):
            return False
    return True


def judge(experiment, preset, claim, records):
    """The `Finding` of `claim` over `records` (one preset's runs, one per seed).

    Records whose status is not ok, or that lack the claim's metrics, are
    left out; the finding counts the seeds it used.
    """
    used = [(r.get("seed"), claim.measure(r)) for r in records if r.get("status", "ok") == "ok"]
    used = [(seed, value) for seed, value in used if value is not None and math.isfinite(value)]
    seeds = tuple(seed for seed, _ in used)
    values = tuple(value for _, value in used)
    if not values:
        return Finding(experiment, preset, claim, INCONCLUSIVE if is_judged(preset, records, claim) else NOT_JUDGED, 0)
    estimate, low, high = t_interval(values)
    if not is_judged(preset, records, claim):
        verdict = NOT_JUDGED
    elif low is None:
        verdict = INCONCLUSIVE
    elif claim.compare == ">":
        verdict = HOLDS if low > claim.threshold else FAILS if high < claim.threshold else INCONCLUSIVE
    else:
        verdict = HOLDS if high < claim.threshold else FAILS if low > claim.threshold else INCONCLUSIVE
    return Finding(experiment, preset, claim, verdict, len(values), estimate, low, high, values, seeds)


def judge_all(experiment, claims, records):
    """Every claim judged for every preset of `records`, presets in order of first appearance.

    A claim whose metric no record of a preset holds (another dataset's
    preset, an older record format) has no finding for that preset.
    """
    presets = list(dict.fromkeys(r.get("preset") for r in records))
    findings = []
    for preset in presets:
        runs = [r for r in records if r.get("preset") == preset]
        for claim in claims:
            if any(claim.measure(r) is not None for r in runs):
                findings.append(judge(experiment, preset, claim, runs))
    return findings
