import numpy as np
import pytest
from scipy import special

from supernet import metrics


def _calibrated_problem(seed, num_samples=2000, num_classes=5, scale=2.0):
    """Logits and labels drawn from softmax(logits): calibrated by design."""
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(num_samples, num_classes))
    probs = special.softmax(logits, axis=-1)
    cumulative = np.cumsum(probs, axis=-1)
    draws = rng.random((num_samples, 1))
    labels = np.minimum(np.sum(cumulative < draws, axis=-1), num_classes - 1)
    return logits, labels


# === Single-model metrics ===


def test_accuracy_hand_computed():
    # argmax per row: 0, 1, 0, 1 (the 0.5/0.5 tie goes to class 0);
    # labels 0, 1, 2, 1 -> 3 of 4 correct.
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.0, 0.5], [0.2, 0.5, 0.3]]
    assert metrics.accuracy([0, 1, 2, 1], probs) == pytest.approx(0.75)


def test_nll_and_per_sample_cross_entropy_hand_computed():
    # -ln 0.5 = 0.693147, -ln 0.8 = 0.223144; mean = 0.458145.
    probs = [[0.5, 0.5], [0.2, 0.8]]
    losses = metrics.per_sample_cross_entropy([0, 1], probs)
    np.testing.assert_allclose(losses, [0.693147, 0.223144], atol=1e-6)
    assert metrics.nll([0, 1], probs) == pytest.approx(0.458145, abs=1e-6)


def test_nll_clips_zero_probability_at_eps():
    # p[y] = 0 -> -ln(eps) instead of inf: -ln(1e-12) = 27.631021.
    assert metrics.nll([1], [[1.0, 0.0]]) == pytest.approx(27.631021, abs=1e-6)
    assert metrics.nll([1], [[1.0, 0.0]], eps=1e-3) == pytest.approx(6.907755)


def test_loss_statistics_matches_numpy_percentile():
    # Two-class rows [exp(-l), 1 - exp(-l)] with label 0 give losses
    # l = 0, 1, ..., 9: mean 4.5, population std sqrt(82.5 / 10) = 2.872281,
    # p90 at rank 0.9 * 9 = 8.1 -> 8.1, p95 at rank 8.55 -> 8.55.
    losses = np.arange(10.0)
    p = np.exp(-losses)
    probs = np.stack([p, 1 - p], axis=1)
    stats = metrics.loss_statistics(np.zeros(10, dtype=int), probs)
    assert stats["mean"] == pytest.approx(4.5)
    assert stats["std"] == pytest.approx(2.872281, abs=1e-6)
    assert stats["p90"] == pytest.approx(8.1)
    assert stats["p95"] == pytest.approx(8.55)
    assert stats["p95"] == pytest.approx(np.percentile(losses, 95))


def test_brier_score_hand_computed():
    # Row 1, y=0: (0.7-1)^2 + 0.3^2 = 0.18; row 2, y=1: 0.4^2 + (0.6-1)^2
    # = 0.32; mean = 0.25.
    assert metrics.brier_score([0, 1], [[0.7, 0.3], [0.4, 0.6]]) == (
        pytest.approx(0.25)
    )
    # y=2: 0.5^2 + 0.3^2 + (0.2-1)^2 = 0.25 + 0.09 + 0.64 = 0.98.
    assert metrics.brier_score([2], [[0.5, 0.3, 0.2]]) == pytest.approx(0.98)
    assert metrics.brier_score([0, 1], [[1.0, 0.0], [0.0, 1.0]]) == 0.0


@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_zero_for_perfectly_calibrated_bins(num_bins):
    # 10 samples at confidence 0.8 with exactly 8 correct, 10 samples at
    # confidence 0.6 with exactly 6 correct: in every bin acc == conf.
    probs = [[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10
    labels = [0] * 8 + [1] * 2 + [0] * 6 + [1] * 4
    assert metrics.expected_calibration_error(
        labels, probs, num_bins=num_bins
    ) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_computed():
    # conf 0.9 x2 (1 correct), conf 0.65 x2 (2 correct). With 10 bins:
    # bin (0.8, 0.9]: 2/4 * |0.5 - 0.9| = 0.2; bin (0.6, 0.7]:
    # 2/4 * |1.0 - 0.65| = 0.175; ECE = 0.375. With 1 bin: |0.75 - 0.775|.
    probs = [[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.35, 0.65]]
    labels = [0, 1, 0, 1]
    assert metrics.expected_calibration_error(
        labels, probs, num_bins=10
    ) == pytest.approx(0.375)
    assert metrics.expected_calibration_error(
        labels, probs, num_bins=1
    ) == pytest.approx(0.025)


def test_ece_bins_are_right_closed():
    # conf 0.5 (correct) belongs to (0, 0.5], conf 1.0 (wrong) to (0.5, 1]:
    # 1/2 * |1 - 0.5| + 1/2 * |0 - 1| = 0.75. Had 0.5 gone to the upper
    # bin, the result would be |0.5 - 0.75| = 0.25.
    probs = [[0.5, 0.5], [1.0, 0.0]]
    assert metrics.expected_calibration_error(
        [0, 1], probs, num_bins=2
    ) == pytest.approx(0.75)


# === Temperature scaling ===


def test_temperature_scale_hand_computed():
    # T=2: sqrt(0.8) / sqrt(0.2) = 2 -> [2/3, 1/3].
    # T=0.5: 0.8^2 / 0.2^2 = 16 -> [16/17, 1/17]. Zeros stay zero.
    probs = [[0.8, 0.2, 0.0]]
    np.testing.assert_allclose(
        metrics.temperature_scale(probs, 2.0), [[2 / 3, 1 / 3, 0.0]]
    )
    np.testing.assert_allclose(
        metrics.temperature_scale(probs, 0.5), [[16 / 17, 1 / 17, 0.0]]
    )
    np.testing.assert_allclose(metrics.temperature_scale(probs, 1.0), probs)


@pytest.mark.parametrize(
    "margin, frac_correct",
    [(4.0, 0.75), (0.5, 0.9)],  # overconfident, underconfident
)
def test_fit_temperature_closed_form(margin, frac_correct):
    # All rows have logits [margin, 0] and a fraction q has label 0, so the
    # optimum satisfies sigmoid(margin / T) = q, i.e.
    # T = margin / ln(q / (1 - q)): 4 / ln 3 = 3.641 and 0.5 / ln 9 = 0.228.
    num_correct = int(round(frac_correct * 100))
    logits = np.tile([margin, 0.0], (100, 1))
    labels = np.array([0] * num_correct + [1] * (100 - num_correct))
    expected = margin / np.log(frac_correct / (1 - frac_correct))
    temperature = metrics.fit_temperature(labels, logits)
    assert temperature == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sharpness", [0.2, 1.0, 5.0, 30.0])
def test_fit_temperature_never_worsens_fit_nll(seed, sharpness):
    logits, labels = _calibrated_problem(seed, num_samples=300)
    logits = sharpness * logits
    temperature = metrics.fit_temperature(labels, logits)
    before = metrics.nll(labels, special.softmax(logits, axis=-1))
    after = metrics.nll(
        labels, special.softmax(logits / temperature, axis=-1)
    )
    assert after <= before + 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_fit_temperature_direction(seed):
    logits, labels = _calibrated_problem(seed)
    # Logits 4x too sharp need T ~ 4; 4x too flat need T ~ 1/4.
    assert metrics.fit_temperature(labels, 4.0 * logits) > 2.0
    assert metrics.fit_temperature(labels, 0.25 * logits) < 0.5
    assert metrics.fit_temperature(labels, logits) == pytest.approx(1.0, abs=0.2)


def test_fit_temperature_uninformative_logits_returns_one():
    # Constant rows: the NLL is ln 3 for every T.
    assert metrics.fit_temperature([0, 1, 2], np.zeros((3, 3))) == 1.0


def test_calibrated_nll_close_to_nll_when_calibrated():
    logits, labels = _calibrated_problem(0)
    probs = special.softmax(logits, axis=-1)
    plain = metrics.nll(labels, probs)
    calibrated = metrics.calibrated_nll(labels, probs)
    assert abs(calibrated - plain) < 0.02 * plain


def test_calibrated_nll_much_lower_when_overconfident():
    logits, labels = _calibrated_problem(1)
    true_nll = metrics.nll(labels, special.softmax(logits, axis=-1))
    overconfident = special.softmax(6.0 * logits, axis=-1)
    plain = metrics.nll(labels, overconfident)
    calibrated = metrics.calibrated_nll(labels, overconfident)
    assert calibrated < 0.5 * plain
    # Temperature scaling undoes a pure rescaling of the logits.
    assert calibrated == pytest.approx(true_nll, rel=0.02)


def test_calibrated_nll_seeded_and_validates_size():
    logits, labels = _calibrated_problem(2, num_samples=200)
    probs = special.softmax(3.0 * logits, axis=-1)
    first = metrics.calibrated_nll(labels, probs, num_splits=3, seed=7)
    assert first == metrics.calibrated_nll(labels, probs, num_splits=3, seed=7)
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.calibrated_nll([0], [[1.0, 0.0]])


# === Agreement and diversity ===


MEMBER_PREDS = np.array(
    [
        [0, 0, 1, 1],
        [0, 1, 1, 1],
        [1, 1, 0, 0],
    ]
)
# Pairwise disagreements: (0,1) differ at 1 of 4 samples -> 0.25;
# (0,2) at all 4 -> 1.0; (1,2) at 3 of 4 -> 0.75.
EXPECTED_DISAGREEMENT = np.array(
    [
        [0.0, 0.25, 1.0],
        [0.25, 0.0, 0.75],
        [1.0, 0.75, 0.0],
    ]
)


def test_disagreement_labels_and_probs():
    assert metrics.disagreement([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    # Prob rows reduce to labels [0, 1], compared with labels [0, 0].
    probs = [[0.9, 0.1], [0.3, 0.7]]
    assert metrics.disagreement(probs, [0, 0]) == 0.5
    assert metrics.disagreement(probs, probs) == 0.0


def test_pairwise_disagreement_and_agreement_hand_computed():
    one_hot = np.eye(2)[MEMBER_PREDS]
    for inputs in (MEMBER_PREDS, one_hot):
        pairwise = metrics.pairwise_disagreement(inputs)
        np.testing.assert_allclose(pairwise, EXPECTED_DISAGREEMENT)
        agreement = metrics.agreement_matrix(inputs)
        np.testing.assert_allclose(agreement, 100 * (1 - EXPECTED_DISAGREEMENT))


def test_agreement_matrix_properties_on_random_members():
    rng = np.random.default_rng(0)
    member_probs = rng.dirichlet(np.ones(4), size=(5, 50))
    agreement = metrics.agreement_matrix(member_probs)
    np.testing.assert_array_equal(np.diag(agreement), 100.0)
    np.testing.assert_array_equal(agreement, agreement.T)
    np.testing.assert_allclose(
        metrics.pairwise_disagreement(member_probs) + agreement / 100, 1.0
    )
    # Each entry equals the two-model disagreement.
    assert agreement[1, 3] == pytest.approx(
        100 * (1 - metrics.disagreement(member_probs[1], member_probs[3]))
    )


def test_diversity_hand_computed():
    # Members err at samples 3 and 2 of y=0000: mean error 0.25, they
    # disagree on 2 of 4 samples -> 100 * 0.5 / 0.25 = 200.
    assert metrics.diversity([0, 0, 0, 0], [[0, 0, 0, 1], [0, 0, 1, 0]]) == 200.0
    # MEMBER_PREDS vs y = 0111: errors 1/4, 0, 3/4 -> mean 1/3; mean
    # disagreement over i<j (0.25 + 1 + 0.75) / 3 = 2/3 -> 100 * 2 = 200.
    y = [0, 1, 1, 1]
    assert metrics.diversity(y, MEMBER_PREDS) == pytest.approx(200.0)
    assert metrics.diversity(y, np.eye(2)[MEMBER_PREDS]) == pytest.approx(200.0)


def test_diversity_edge_cases():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=20)
    labels = rng.integers(0, 3, size=20)
    assert metrics.diversity(labels, np.stack([probs] * 4)) == 0.0
    assert metrics.diversity(labels, probs[None]) == 0.0
    # All members perfect: zero error and (necessarily) zero disagreement.
    perfect = np.eye(3)[labels]
    assert metrics.diversity(labels, np.stack([perfect] * 3)) == 0.0


def _loop_cka(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (
        np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    )


def test_linear_cka_hand_computed():
    # Centered x = [-1, 0, 1], y = [0, -1, 1]: (y.x)^2 = 1, |x|^2 |y|^2 = 4
    # -> 0.25 (for 1-D features CKA is the squared correlation, 0.5^2).
    assert metrics.linear_cka([[1], [2], [3]], [[1], [0], [2]]) == (
        pytest.approx(0.25)
    )


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert metrics.linear_cka(x, x) == pytest.approx(1.0)
    assert metrics.linear_cka(x, x @ q) == pytest.approx(1.0)
    assert metrics.linear_cka(x, 7.5 * x + 3.0) == pytest.approx(1.0)
    y = rng.normal(size=(100, 6))
    cka = metrics.linear_cka(x, y)
    assert 0.0 <= cka < 0.3
    assert metrics.linear_cka(y, x) == pytest.approx(cka)


def test_linear_cka_gram_path_matches_feature_formula():
    # n < d takes the n x n Gram route; it must equal the feature formula.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 30))
    y = x[:, :20] + 0.5 * rng.normal(size=(10, 20))
    assert metrics.linear_cka(x, y) == pytest.approx(_loop_cka(x, y))


def test_knn_accuracy_separated_clusters_and_random_labels():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    labels = np.repeat(np.arange(3), 30)
    embedding = centers[labels] + rng.normal(size=(90, 2))
    assert metrics.knn_accuracy(embedding, labels, k=5) == 1.0

    embedding = rng.normal(size=(600, 3))
    labels = rng.integers(0, 4, size=600)
    assert metrics.knn_accuracy(embedding, labels, k=5) == pytest.approx(
        0.25, abs=0.07
    )


def test_knn_accuracy_tie_goes_to_nearest_neighbour():
    # Points 0, 1, 3, 7 with labels 0, 0, 1, 1 and k=2. Neighbours:
    # 0 -> (1:l0, 3:l1) tie -> 0 correct; 1 -> (0:l0, 3:l1) tie -> 0 correct;
    # 3 -> (1:l0, 0:l0) -> 0 wrong; 7 -> (3:l1, 1:l0) tie -> 1 correct.
    # 3/4 (a "lowest label wins" rule would give 2/4).
    embedding = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert metrics.knn_accuracy(embedding, [0, 0, 1, 1], k=2) == 0.75


def test_knn_accuracy_excludes_self_among_duplicates():
    # Each point's only zero-distance neighbour is its duplicate with the
    # other label, so leave-one-out 1-NN is always wrong.
    embedding = np.array([[0.0], [0.0], [10.0], [10.0]])
    assert metrics.knn_accuracy(embedding, [0, 1, 0, 1], k=1) == 0.0


# === Combiners ===


def test_softmax_vote_equals_loop_over_members():
    rng = np.random.default_rng(0)
    member_probs = rng.dirichlet(np.ones(4), size=(3, 7))
    expected = np.zeros((7, 4))
    for probs in member_probs:
        expected += probs / len(member_probs)
    np.testing.assert_allclose(metrics.softmax_vote(member_probs), expected)


def test_log_prob_average_hand_computed_and_normalized():
    # Geometric mean of [0.8, 0.2] and [0.5, 0.5]: sqrt(0.4) / sqrt(0.1) = 2
    # -> [2/3, 1/3]; opposite confident members cancel to [0.5, 0.5].
    np.testing.assert_allclose(
        metrics.log_prob_average([[[0.8, 0.2]], [[0.5, 0.5]]]), [[2 / 3, 1 / 3]]
    )
    np.testing.assert_allclose(
        metrics.log_prob_average([[[0.9, 0.1]], [[0.1, 0.9]]]), [[0.5, 0.5]]
    )
    rng = np.random.default_rng(0)
    member_probs = rng.dirichlet(np.full(5, 0.3), size=(4, 20))
    np.testing.assert_allclose(
        metrics.log_prob_average(member_probs).sum(axis=-1), 1.0
    )


def test_majority_vote_labels_tie_goes_to_lowest_class():
    # Rows are members, columns samples. Votes per sample:
    # 0: {2: 2, 0: 2} tie -> 0; 1: {2: 2, 1: 2} tie -> 1; 2: {1: 3, 0: 1} -> 1.
    preds = [[2, 2, 1], [2, 1, 1], [0, 2, 1], [0, 1, 0]]
    np.testing.assert_array_equal(metrics.majority_vote(preds), [0, 1, 1])
    np.testing.assert_array_equal(
        metrics.majority_vote(preds, num_classes=5), [0, 1, 1]
    )


def test_majority_vote_probs_tie_goes_to_summed_probability():
    member_probs = np.array(
        [
            [[0.6, 0.4], [0.51, 0.49]],
            [[0.1, 0.9], [0.51, 0.49]],
            [[0.5, 0.5], [0.0, 1.0]],  # argmax tie -> class 0
        ]
    )
    # Members 0 and 1, sample 0: votes {0: 1, 1: 1}; summed probabilities
    # 0.7 vs 1.3 -> 1 (the lowest-index rule would give 0). Sample 1: 0.
    np.testing.assert_array_equal(
        metrics.majority_vote(member_probs[:2]), [1, 0]
    )
    # All three members. Sample 0: votes {0: 2, 1: 1} -> 0. Sample 1: votes
    # {0: 2, 1: 1} -> 0, although class 1 has the larger summed
    # probability (1.98 vs 1.02): probabilities only break ties.
    np.testing.assert_array_equal(metrics.majority_vote(member_probs), [0, 0])


def test_ensemble_metrics_consistent_with_functions():
    rng = np.random.default_rng(0)
    member_probs = rng.dirichlet(np.ones(3), size=(4, 40))
    labels = rng.integers(0, 3, size=40)
    result = metrics.ensemble_metrics(labels, member_probs)
    ensemble = metrics.softmax_vote(member_probs)
    assert result["accuracy"] == metrics.accuracy(labels, ensemble)
    assert result["nll"] == metrics.nll(labels, ensemble)
    assert result["calibrated_nll"] == metrics.calibrated_nll(labels, ensemble)
    assert result["diversity"] == metrics.diversity(labels, member_probs)
    assert result["member_accuracy"] == [
        metrics.accuracy(labels, p) for p in member_probs
    ]
    assert result["avg_member_accuracy"] == pytest.approx(
        np.mean(result["member_accuracy"])
    )
    geometric = metrics.ensemble_metrics(labels, member_probs, "log_prob")
    assert geometric["nll"] == metrics.nll(
        labels, metrics.log_prob_average(member_probs)
    )
    with pytest.raises(ValueError, match="combiner"):
        metrics.ensemble_metrics(labels, member_probs, combiner="median")


# === Validation ===


GOOD_PROBS = np.array([[0.7, 0.3], [0.4, 0.6]])


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (metrics.accuracy, ([0, 1, 1], GOOD_PROBS), "y_true"),
        (metrics.accuracy, ([0, 2], GOOD_PROBS), "y_true"),
        (metrics.accuracy, ([0, -1], GOOD_PROBS), "y_true"),
        (metrics.accuracy, ([0, 0.5], GOOD_PROBS), "y_true"),
        (metrics.accuracy, ([[0, 1]], GOOD_PROBS), "y_true"),
        (metrics.nll, ([0, 1], GOOD_PROBS[0]), "probs.shape"),
        (metrics.nll, ([0, 1], [[np.nan, 1.0], [0.4, 0.6]]), "NaN"),
        (metrics.nll, ([0, 1], [[np.inf, 1.0], [0.4, 0.6]]), "NaN"),
        (metrics.brier_score, ([0, 1], [[1.2, -0.2], [0.4, 0.6]]), "non-neg"),
        (metrics.brier_score, ([0, 1], [[2.0, 1.0], [0.4, 0.6]]), "sum to 1"),
        (metrics.expected_calibration_error, ([0, 1], GOOD_PROBS, 0), "num_bins"),
        (metrics.temperature_scale, (GOOD_PROBS, 0.0), "temperature"),
        (metrics.fit_temperature, ([0, 1], [[np.nan, 0.0], [0.0, 1.0]]), "NaN"),
        (metrics.disagreement, ([0, 1], [0, 1, 1]), "same number"),
        (metrics.pairwise_disagreement, ([0, 1],), "member_probs_or_preds"),
        (metrics.diversity, ([0, 1, 1], [[0, 1], [1, 1]]), "y_true"),
        (metrics.linear_cka, (np.ones((4, 2)), np.ones((5, 2))), "same number"),
        (metrics.linear_cka, (np.ones((4, 2)), np.eye(4)), "constant"),
        (metrics.knn_accuracy, (np.eye(4), [0, 1, 0, 1], 4), "`k`"),
        (metrics.softmax_vote, (GOOD_PROBS,), "member_probs.shape"),
        (metrics.majority_vote, ([[0, 3]], 3), "num_classes"),
    ],
)
def test_bad_inputs_raise(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_public_api_is_declared():
    for name in metrics.__all__:
        assert callable(getattr(metrics, name))
        assert getattr(metrics, name).__doc__


def test_mean_off_diagonal_hand_value():
    # Off-diagonal entries 80, 60, 70, 50, 90, 40 -> mean 390 / 6 = 65.
    matrix = [[100.0, 80.0, 60.0], [70.0, 100.0, 50.0], [90.0, 40.0, 100.0]]
    assert metrics.mean_off_diagonal(matrix) == pytest.approx(65.0)


@pytest.mark.parametrize("matrix", [[[100.0]], [[1.0, 2.0, 3.0]]])
def test_mean_off_diagonal_rejects_non_square_or_single(matrix):
    with pytest.raises(ValueError, match="matrix"):
        metrics.mean_off_diagonal(matrix)


def test_logit_margin_hand_values_and_shift_invariance():
    logits = np.array([[2.0, 0.5, 1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    y = np.array([0, 1, 0])
    np.testing.assert_allclose(metrics.logit_margin(y, logits), [1.0, -2.0, 0.0])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(metrics.logit_margin(y, np.log(probs)), [1.0, -2.0, 0.0], atol=1e-12)
    # Positive exactly when the true class is the unique arg-max (row 3 is a tie).
    assert (metrics.logit_margin(y, logits) > 0).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="logits"):
        metrics.logit_margin(np.array([0]), np.array([[1.0]]))
