"""The benchmark's pieces run and count FLOPs right (no timing assertions)."""

import pytest

from supernet_lab import bench


def test_training_flops_closed_form():
    # 6 FLOPs per weight per sample: 2 forward, 4 backward (inputs and weights).
    assert bench.training_flops_per_sample([(784, 200), (200, 10)]) == 6 * (784 * 200 + 200 * 10)


def test_bench_pieces_run_on_tiny_sizes():
    result = bench.bench_training(2, (8,), 20, 3, num_samples=64, epochs=1, batch_size=32, rounds=1)
    assert {"fused_s", "fused_xla_s", "fused_keras_adam_s", "fused_cpu_s", "fused_keras_adam_cpu_s", "sequential_s", "speedup", "fused_gflops"} <= set(result)
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
    assert cpu_fmnist[4] == "<= 0.5 (met)"
    long_fmnist = rows[2]
    assert long_fmnist[3] == "<= 0.30 CPU (bound)"  # 30 s / the single net's 100 s stage
    assert "--preset cpu_long --seeds 0" in notes[1]
    assert bench.time_to_accuracy_rows(tmp_path / "missing") == ([], [])
