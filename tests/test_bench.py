"""The benchmark's pieces run and count FLOPs right (no timing assertions)."""

import sys

import numpy as np
import pytest

from supernet_lab import bench, peers


def test_training_flops_closed_form():
    # 6 FLOPs per weight per sample: 2 forward, 4 backward (inputs and weights).
    assert bench.training_flops_per_sample([(784, 200), (200, 10)]) == 6 * (784 * 200 + 200 * 10)


@pytest.mark.slow
def test_bench_pieces_run_on_tiny_sizes():
    result = bench.bench_training(2, (8,), 20, 3, num_samples=64, epochs=1, batch_size=32, rounds=1)
    assert {"fused_s", "fused_xla_s", "fused_keras_adam_s", "fused_cpu_s", "fused_keras_adam_cpu_s", "fused_steps_s",
            "fused_steps_cpu_s", "fused_bytes_s", "fused_bytes_cpu_s", "fused_bytes_steps_s", "fused_bytes_steps_cpu_s",
            "sequential_s", "speedup", "fused_gflops"} <= set(result)
    assert result["fused_s"] > 0 and result["sequential_s"] > 0
    inference = bench.bench_inference(result["fused"], result["members"], result["x"], rounds=1)
    assert inference["supernet_per_s"] > 0 and inference["separate_per_s"] > 0
    assert inference["speedup_range_fused_supernet"][0] <= inference["speedup_fused_supernet"] <= inference["speedup_range_fused_supernet"][1]
    # Same arithmetic on both sides (2 members of 20-8-3, plus the 16 -> 3 head on the fused side):
    member_flops, head_flops = 2 * (20 * 8 + 8 * 3), 2 * (2 * 8 * 3)
    ratio = inference["fused_supernet_gflops"] / inference["separate_gflops"]
    expected = inference["fused_supernet_per_s"] / inference["separate_per_s"] * (2 * member_flops + head_flops) / (2 * member_flops)
    assert abs(ratio - expected) < 1e-9 * expected
    assert bench.matmul_peak(sizes=(32, 64), repeats=1) > 0
    assert bench.matmul_ceiling(2, [20, 8, 3], batch_size=32, repeats=1) > 0


def test_step_breakdown_parts_follow_from_the_five_timings_and_sum_to_the_step(monkeypatch):
    steps = 2  # 64 samples, batch 32
    per_step = {"fit": 10.0, "forward_backward": 7.0, "forward_backward_no_dropout": 6.0, "adam": 1.0, "matmuls": 4.0}
    monkeypatch.setattr(bench, "_interleaved_best", lambda fns, rounds: {name: steps * per_step[name] for name in fns})
    result = bench.bench_step_breakdown(2, (8,), 20, 3, num_samples=64, batch_size=32)
    assert result["seconds_per_step"] == per_step and result["step_s"] == 10.0
    expected = {"matmuls": 0.4, "other_forward_backward": 0.2, "dropout": 0.1, "adam": 0.1, "fit_loop": 0.2}
    assert result["shares"] == pytest.approx(expected)


def test_step_breakdown_times_the_real_parts():
    result = bench.bench_step_breakdown(2, (8,), 20, 3, num_samples=64, batch_size=32, rounds=1)
    assert set(result["seconds_per_step"]) == {"fit", "forward_backward", "forward_backward_no_dropout", "adam", "matmuls"}
    assert all(seconds > 0 for seconds in result["seconds_per_step"].values())
    assert sum(result["shares"].values()) == pytest.approx(1.0)


def test_interleaved_times_keep_every_round(monkeypatch):
    clock = iter([0.0, 3.0, 3.0, 4.0, 4.0, 6.0, 6.0, 6.5])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    assert bench._interleaved_times({"a": lambda: None, "b": lambda: None}, rounds=2) == {"a": [3.0, 2.0], "b": [1.0, 0.5]}


def test_interleaved_best_keeps_each_functions_minimum(monkeypatch):
    clock = iter([0.0, 3.0, 3.0, 4.0, 4.0, 6.0, 6.0, 6.5])  # a: 3, b: 1, then a: 2, b: 0.5
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock))
    calls = []
    best = bench._interleaved_best({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2)
    assert best == {"a": 2.0, "b": 0.5}
    assert calls == ["a", "b", "a", "b"]


def test_precision_bench_restores_the_policy():
    import keras

    from supernet import data

    ds = data.synthetic(input_shape=(784,), num_classes=3, num_train=64, num_test=16, validation_size=0)
    result = bench.bench_precision("mixed_bfloat16", ds, num_members=2, hidden=(8,), epochs=1, batch_size=32)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["seconds"] > 0
    assert keras.config.dtype_policy().name == "float32"


def _tta_record(seed, preset, single_cpu, super_cpu, single_stage_cpu=100.0):
    def side(cpu):
        return {"reached": cpu is not None, "cpu_s": cpu, "wall_s": None if cpu is None else cpu / 2,
                "reached_epoch": None if cpu is None else cpu / 2}

    def dataset(target):
        both = single_cpu is not None and super_cpu is not None
        return {
            "target": target,
            "single": side(single_cpu),
            "supermodel": side(super_cpu),
            "ratio": {"cpu_s": super_cpu / single_cpu if both else None,
                      "wall_s": super_cpu / single_cpu if both else None},
        }

    config = {"num_members": 3, "fmnist_single_units": [4], "fmnist_member_units": [2], "fmnist_max_epochs": 5,
              "tng_single_units": [4], "tng_member_units": [2], "tng_max_epochs": 5}
    return {"experiment": bench.TIME_TO_ACCURACY, "preset": preset, "seed": seed, "config": config,
            "git_commit": "abcdef0123", "status": "ok",
            "metrics": {"fmnist": dataset(0.9), "tng": dataset(0.84)},
            "timings": {"single_fmnist": {"cpu_s": single_stage_cpu}, "single_tng": {"cpu_s": single_stage_cpu}}}


def test_time_to_accuracy_rows_from_recorded_runs(tmp_path):
    from supernet import reports

    store = reports.ResultsStore(tmp_path / f"{bench.TIME_TO_ACCURACY}.jsonl")
    store.append(_tta_record(0, "cpu", single_cpu=10.0, super_cpu=4.0))
    store.append(_tta_record(1, "cpu", single_cpu=20.0, super_cpu=12.0))
    store.append(_tta_record(0, "cpu_long", single_cpu=None, super_cpu=30.0))
    rows, notes = bench.time_to_accuracy_rows(tmp_path)
    assert len(rows) == 4 and len(notes) == 2
    cpu_fmnist = rows[0]
    assert "preset cpu, seeds 0,1" in cpu_fmnist[0]
    assert cpu_fmnist[3].startswith("0.50 CPU")  # mean of 0.4 and 0.6
    assert cpu_fmnist[1].startswith("15.0 s CPU, 7.5 epochs") and cpu_fmnist[2] == "8.0 s CPU, 4.0 epochs"
    # Paired t-interval of the ratios 0.4 and 0.6: 0.5 +- 12.706 * 0.1414 / sqrt(2).
    assert cpu_fmnist[4] == "ratio < 1: inconclusive (2 seeds, 95% interval [-0.77, 1.77])"
    long_fmnist = rows[2]
    assert long_fmnist[3] == "<= 0.30 CPU (bound)"  # 30 s / the single net's 100 s stage
    assert long_fmnist[4] == "ratio < 1: inconclusive (0 seeds)"  # no seed has a ratio
    assert "--preset cpu_long --seeds 0" in notes[1]
    assert bench.time_to_accuracy_rows(tmp_path / "missing") == ([], [])


# === Peers: what engineers write instead of PartitionedMLP ===


@pytest.fixture(scope="module")
def fused_and_batch():
    """A 3-member PartitionedMLP with trained-looking (random) weights and one batch."""
    from supernet.models import PartitionedMLP

    rng = np.random.default_rng(0)
    fused = PartitionedMLP(20, [8, 6], 4, num_members=3, dropout=0.2, seed=0)
    fused.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in fused.get_weights()])
    x = rng.random((16, 20), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    return fused, x, y


def _loop_over_members(fused, x, y):
    """Each member's probabilities, `(batch, K, classes)`, and the sum of their mean cross-entropies."""
    probs = np.stack([member.predict(x, verbose=0) for member in fused.members()], axis=1)
    loss = -np.log(probs[np.arange(len(y)), :, y]).mean(axis=0).sum()
    return probs, loss


def _peer(kind, fused):
    weights = peers.member_weights(fused.members())
    if kind == "towers":
        model = peers.tower_model(20, [8, 6], 4, num_members=3, dropout=0.2)
        peers.set_tower_weights(model, weights)
        model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * 3)
        return model
    pytest.importorskip("jax")
    model = peers.JaxEnsemble(20, [8, 6], 4, num_members=3, dropout=0.2)
    model.set_member_weights(weights)
    return model


def _predict_and_loss(kind, model, x, y):
    if kind == "towers":
        return np.stack(model.predict(x, verbose=0), axis=1), model.evaluate(x, [y] * 3, batch_size=len(x), verbose=0)[0]
    return model.predict(x), model.loss(x, y)


@pytest.mark.parametrize("kind", ["towers", "jax"])
def test_peer_computes_the_loop_over_members_on_the_same_weights(kind, fused_and_batch):
    fused, x, y = fused_and_batch
    model = _peer(kind, fused)
    probs, loss = _predict_and_loss(kind, model, x, y)
    expected_probs, expected_loss = _loop_over_members(fused, x, y)
    np.testing.assert_allclose(probs, expected_probs, atol=1e-6)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert model.count_params() == fused.count_params()


def test_peers_take_the_same_adam_steps_as_the_fused_model():
    # Without dropout three steps of the library's FusedAdam, Keras's Adam on the
    # towers and the Adam written out in JAX leave the same weights.
    pytest.importorskip("jax")
    from supernet.models import PartitionedMLP

    rng = np.random.default_rng(1)
    x, y = rng.random((16, 20), dtype=np.float32), rng.integers(0, 4, 16)
    fused = PartitionedMLP(20, [8, 6], 4, num_members=3)
    fused.compile(optimizer="adam")
    weights = peers.member_weights(fused.members())
    towers = peers.tower_model(20, [8, 6], 4, num_members=3)
    peers.set_tower_weights(towers, weights)
    towers.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * 3)
    ensemble = peers.JaxEnsemble(20, [8, 6], 4, num_members=3)
    ensemble.set_member_weights(weights)
    before = fused.predict(x, verbose=0)
    for _ in range(3):
        fused.train_on_batch(x, y)
        towers.train_on_batch(x, [y] * 3)
        ensemble.train_on_batch(x, y)
    after = fused.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-3  # the steps moved the weights
    np.testing.assert_allclose(np.stack(towers.predict(x, verbose=0), axis=1), after, atol=1e-5)
    np.testing.assert_allclose(ensemble.predict(x), after, atol=1e-5)


def _tiny_ds():
    from supernet import data

    return data.synthetic(input_shape=(20,), num_classes=3, num_train=96, num_test=32, validation_size=0)


@pytest.mark.slow
@pytest.mark.parametrize("jax_installed", [True, False])
def test_bench_peers_times_every_contender_and_skips_jax_with_the_reason(jax_installed, monkeypatch):
    if jax_installed:
        pytest.importorskip("jax")
    else:
        monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` raises ImportError
    results = bench.bench_peers(_tiny_ds(), 2, (8,), batch_size=32, rounds=2)
    assert list(results) == list(bench.PEERS)
    ran = [name for name, result in results.items() if "times" in result]
    assert ran == (list(bench.PEERS) if jax_installed else ["sequential", "fused", "fused_fast", "towers"])
    for name in ran:
        assert len(results[name]["times"]) == 2 and min(results[name]["times"]) > 0
        assert 0.0 <= results[name]["accuracy"] <= 1.0
    lines, rows = bench.peer_report(results, 2, 32)
    # One row per contender, then each fused variant against the peers.
    assert len(rows) == 7 and all(row[0].startswith("peers, batch 32: ") for row in rows)
    assert rows[5][0].endswith("supernet PartitionedMLP against each peer")
    assert rows[6][0].endswith('dropout_masks="bytes", steps_per_execution=32 against each peer')
    assert all(("pure JAX" in row[3]) == jax_installed for row in rows[5:])
    if not jax_installed:
        assert results["jax"] == {"skipped": results["jax"]["skipped"]}
        assert "JAX is not installed" in results["jax"]["skipped"] and 'pip install -e ".[jax]"' in results["jax"]["skipped"]
        assert rows[4][2] == f"skipped: {results['jax']['skipped']}" and "skipped" in lines[4]


def test_peer_report_ratios_are_per_round_medians_and_far_accuracies_warn():
    results = {
        "sequential": {"times": [6.0, 8.0, 12.0], "accuracy": 0.85},
        "fused": {"times": [2.0, 2.0, 6.0], "accuracy": 0.86},  # ratios 3, 4, 2
        "towers": {"times": [4.0, 4.0, 4.0], "accuracy": 0.80},  # 5 points below the fits
        "jax": {"skipped": "JAX is not installed"},
    }
    lines, rows = bench.peer_report(results, 6, 128)
    assert rows[1][3] == "3.00x (rounds 2.00-4.00x)"
    assert rows[1][2] == "best 2.00 s, median 2.00 s, slowest 6.00 s per epoch; test acc 86.00%"
    assert rows[0][1] == "6.00 s per epoch (6 fits)" and rows[0][3] == "1.00x (rounds 1.00-1.00x)"
    # The fused model against the one peer measured: 4/2, 4/2, 4/6 per round.
    assert rows[4][0] == "peers, batch 128: supernet PartitionedMLP against each peer"
    assert rows[4][3] == "Keras functional model of 6 Dense towers 2.00x (rounds 0.67-2.00x)"
    warnings = bench.accuracy_warnings(results, 6)
    assert len(warnings) == 1 and "6 Dense towers reached 80.00%" in warnings[0]
    assert lines[-1] == "  " + warnings[0]


@pytest.mark.slow
def test_peers_under_another_backend_run_in_a_subprocess_and_name_it():
    outcome = bench.bench_peers_backend("tensorflow", [32], num_members=2, hidden=(8,), num_samples=96, rounds=1)
    results = outcome["results"]["32"]
    assert list(results) == list(bench.PEERS)
    for name in ("sequential", "fused", "fused_fast", "towers"):
        assert len(results[name]["times"]) == 1 and 0.0 <= results[name]["accuracy"] <= 1.0
    _, rows = bench.peer_report(results, 2, 32, backend="tensorflow")
    assert all(row[0].startswith("peers (tensorflow backend), batch 32: ") for row in rows)


def test_peers_under_a_missing_backend_are_skipped_with_the_reason():
    outcome = bench.bench_peers_backend("no_such_backend", [32])
    assert outcome == {"skipped": 'no_such_backend is not importable (pip install -e ".[no_such_backend]")'}


# === Scaling ===


def test_scaling_table_has_a_row_per_width_and_member_count(monkeypatch):
    # The contenders themselves are timed for real in test_bench_peers_*; here
    # each one's epoch is a no-op that counts its calls.
    measured, epochs = [], {}

    def fake_rss(contender, num_members, hidden, *args, **kwargs):
        measured.append((contender, num_members, tuple(hidden)))
        return {"base_mb": 100.0, "peak_mb": 150.0 + num_members}

    def fake_contender(name, num_members, hidden, *args):
        key = (name, num_members, tuple(hidden))
        epochs[key] = 0

        def train(x, y):
            epochs[key] += 1

        return train, None

    monkeypatch.setattr(bench, "training_rss", fake_rss)
    monkeypatch.setattr(bench, "_contender", fake_contender)
    results = bench.bench_scaling((1, 2), ((4,), (8, 8)), num_samples=64, batch_size=32, rounds=1, input_dim=20, num_classes=3)
    table = bench.scaling_table(results, caption="tiny")
    assert [(row[0], row[1]) for row in table.rows] == [("4", 1), ("4", 2), ("8-8", 1), ("8-8", 2)]
    assert table.rows[1][7] == table.rows[1][8] == "152 MB (+52)"
    assert sorted(measured) == sorted((c, k, h) for c in ("sequential", "fused") for k in (1, 2) for h in ((4,), (8, 8)))
    assert epochs == {key: 2 for key in measured}  # the warm-up, then one timed round
    for r in results:
        assert r["speedup"] == pytest.approx(r["sequential_s"] / r["fused_s"])
        flops = bench.training_flops_per_sample(list(zip([20, *r["hidden"]], [*r["hidden"], 3]))) * r["num_members"] * 64
        assert r["fused_gflops"] == pytest.approx(flops / r["fused_s"] / 1e9)
    assert len(table.footnotes) == 2


def test_payoff_notes_say_where_fusing_peaks_and_where_it_is_slower():
    results = [{"hidden": [4], "num_members": k, "speedup": s} for k, s in ((1, 0.8), (2, 1.5), (4, 1.2))]
    results += [{"hidden": [8], "num_members": k, "speedup": s} for k, s in ((1, 1.1), (2, 2.0))]
    assert bench._payoff_notes(results) == [
        "Members of 4: fused training's largest speedup over the sequential fits is 1.50x, at K=2; 1.20x at K=4; "
        "slower than the sequential fits at K=1.",
        "Members of 8: fused training's largest speedup over the sequential fits is 2.00x, at K=2; "
        "faster than the sequential fits at every K measured.",
    ]


@pytest.mark.slow
def test_training_rss_counts_the_weights_and_their_adam_slots():
    def growth_mb(hidden):
        result = bench.training_rss("fused", 2, (hidden,), num_samples=64, batch_size=32, input_dim=784, num_classes=3)
        assert "skipped" not in result, result
        return result["peak_mb"] - result["base_mb"]

    def weights_mb(hidden):
        return 2 * (784 * hidden + hidden + hidden * 3 + 3) * 4 / 2**20

    # Weights, Adam's two moments and the gradients: at least three copies of the extra weights live at once.
    assert growth_mb(1024) - growth_mb(8) >= 3 * (weights_mb(1024) - weights_mb(8))


@pytest.mark.slow
def test_training_rss_is_the_subprocess_own_not_its_parents():
    ballast = np.ones(2**28)  # 2 GiB in this process, touched
    result = bench.training_rss("sequential", 2, (8,), num_samples=64, batch_size=32, input_dim=20, num_classes=3)
    assert "skipped" not in result, result
    assert 0 < result["base_mb"] <= result["peak_mb"] < bench._peak_rss_mb() - 1024, (result, ballast.sum())


def test_cli_passes_scaling_to_the_bench(monkeypatch):
    from supernet_lab import cli

    calls = []
    monkeypatch.setattr(bench, "run", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["bench", "--quick", "--scaling", "--out", "elsewhere"]) == 0
    assert calls == [{"quick": True, "out_dir": "elsewhere", "scaling": True}]
