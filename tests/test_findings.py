"""Claims judged over seeds: intervals equal their closed form, verdicts follow the interval."""

import json
import math

import pytest
from scipy import stats

from supernet_lab import findings
from supernet_lab.findings import Claim


def _records(values, preset="cpu", baseline=None, dataset="fashion_mnist"):
    records = []
    for seed, value in enumerate(values):
        metrics = {"a": value} if baseline is None else {"a": value, "b": baseline[seed]}
        records.append({"preset": preset, "seed": seed, "status": "ok", "config": {"dataset": dataset}, "metrics": metrics})
    return records


BEATS = Claim("beats", "A beats B.", "thesis Table 1", "metrics.a", minus="metrics.b", label="A - B", scale=100, unit=" points")
REACHES = Claim("reaches", "A reaches 0.9.", "thesis 3.5", "metrics.a", threshold=0.9, source_value=0.91, scale=100, unit="%")
BELOW = Claim("below", "A stays below 0.5.", "thesis Table 11", "metrics.a", compare="<", threshold=0.5)


def test_t_interval_equals_the_closed_form():
    values = [0.9, 0.92, 0.95, 0.91]
    mean, low, high = findings.t_interval(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert mean == pytest.approx(0.92)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert findings.t_interval([0.5]) == (0.5, None, None)


@pytest.mark.parametrize(
    "claim, values, baseline, verdict",
    [
        (BEATS, [0.90, 0.91, 0.92], [0.88, 0.89, 0.90], findings.HOLDS),  # a constant +2 points
        (BEATS, [0.88, 0.89, 0.90], [0.90, 0.91, 0.92], findings.FAILS),
        (BEATS, [0.90, 0.88, 0.91], [0.89, 0.89, 0.89], findings.INCONCLUSIVE),  # +1, -1, +2
        (BEATS, [0.95], [0.80], findings.INCONCLUSIVE),  # one seed: no interval
        (REACHES, [0.95, 0.951, 0.949], None, findings.HOLDS),
        (REACHES, [0.85, 0.851, 0.849], None, findings.FAILS),
        (REACHES, [0.85, 0.95], None, findings.INCONCLUSIVE),
        (BELOW, [0.3, 0.31, 0.29], None, findings.HOLDS),
        (BELOW, [1.2, 1.3, 1.1], None, findings.FAILS),
    ],
)
def test_verdict_follows_the_interval(claim, values, baseline, verdict):
    finding = findings.judge("e", "cpu", claim, _records(values, baseline=baseline))
    assert finding.verdict == verdict
    assert finding.n == len(values) and finding.seeds == tuple(range(len(values)))


def test_paired_interval_removes_the_shared_seed_variation():
    # Seeds move both methods together; their difference is always +1 point.
    a, b = [0.80, 0.90, 0.85], [0.79, 0.89, 0.84]
    paired = findings.judge("e", "cpu", BEATS, _records(a, baseline=b))
    assert paired.verdict == findings.HOLDS
    assert paired.estimate == pytest.approx(0.01) and paired.high - paired.low == pytest.approx(0.0, abs=1e-9)
    # Judged as two separate means, the same numbers could not tell.
    mean_a, low_a, high_a = findings.t_interval(a)
    mean_b, low_b, high_b = findings.t_interval(b)
    assert low_a < high_b


@pytest.mark.parametrize("preset, dataset", [("smoke", "fashion_mnist"), ("cpu", "synthetic")])
def test_smoke_and_synthetic_runs_are_not_judged(preset, dataset):
    finding = findings.judge("e", preset, REACHES, _records([0.99, 0.99, 0.99], preset=preset, dataset=dataset))
    assert finding.verdict == findings.NOT_JUDGED


def test_failed_and_incomplete_runs_are_left_out():
    records = _records([0.95, 0.951, 0.949, 0.1])
    records[3]["status"] = "failed: diverged"
    records.append({"preset": "cpu", "seed": 9, "status": "ok", "config": {}, "metrics": {}})
    finding = findings.judge("e", "cpu", REACHES, records)
    assert finding.n == 3 and finding.verdict == findings.HOLDS


def test_judge_all_covers_presets_holding_the_metric():
    records = _records([0.95, 0.96], preset="cpu") + _records([0.5, 0.6], preset="paper")
    records.append({"preset": "other", "seed": 0, "status": "ok", "config": {}, "metrics": {"c": 1}})
    result = findings.judge_all("e", [REACHES, BELOW], records)
    assert [(f.preset, f.claim.id) for f in result] == [("cpu", "reaches"), ("cpu", "below"), ("paper", "reaches"), ("paper", "below")]


def test_sentence_is_signed_and_finding_serialises():
    finding = findings.judge("e", "cpu", BEATS, _records([0.88, 0.89, 0.90], baseline=[0.90, 0.91, 0.92]))
    text = finding.sentence()
    assert "**fails**" in text and "-2.00 points" in text and "3 seeds" in text and "A - B" in text
    assert json.loads(json.dumps(finding.as_dict()))["claim"]["id"] == "beats"


def test_a_star_part_measures_the_mean_over_its_matches():
    record = {"metrics": {
        "first": [0.80, 0.81],
        "grid": {"0": {"lr": 1.0, "sse": {"acc": [0.80, 0.83]}, "star": {"acc": [0.80, 0.84]}},
                 "1": {"lr": 2.0, "sse": {"acc": [0.80, 0.85]}, "star": {"acc": [0.80]}}},
    }}
    claim = Claim("gain", "One more cycle gains.", "here", "metrics.grid.*.*.acc.1", minus="metrics.first.0")
    # Matches 0.83, 0.84 and 0.85; the scalar `lr` and the one-member list have no `acc.1`.
    assert claim.measure(record) == pytest.approx(0.84 - 0.80)
    assert Claim("mean", "M.", "here", "metrics.first.*").measure(record) == pytest.approx(0.805)
    assert Claim("none", "N.", "here", "metrics.grid.*.missing").measure(record) is None
    assert BEATS.measure(_records([0.9], baseline=[0.7])[0]) == pytest.approx(0.2)  # plain paths as before


def test_bad_claims_raise():
    with pytest.raises(ValueError, match="compare"):
        Claim("x", "X.", "here", "metrics.a", compare=">=")
    with pytest.raises(ValueError, match="needs an `id`"):
        Claim("", "X.", "here", "metrics.a")
