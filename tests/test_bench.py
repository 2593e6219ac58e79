"""The benchmark's pieces run and count FLOPs right (no timing assertions)."""

from benchmarks import bench


def test_training_flops_closed_form():
    # 6 FLOPs per weight per sample: 2 forward, 4 backward (inputs and weights).
    assert bench.training_flops_per_sample([(784, 200), (200, 10)]) == 6 * (784 * 200 + 200 * 10)


def test_bench_pieces_run_on_tiny_sizes():
    result = bench.bench_training(2, (8,), 20, 3, num_samples=64, epochs=1, batch_size=32)
    assert {"fused_s", "fused_xla_s", "sequential_s", "speedup", "fused_gflops"} <= set(result)
    assert result["fused_s"] > 0 and result["sequential_s"] > 0
    inference = bench.bench_inference(result["fused"], result["members"], result["x"], repeats=1)
    assert inference["supernet_per_s"] > 0 and inference["separate_per_s"] > 0
    assert bench.matmul_peak(size=64, repeats=1) > 0


def test_precision_bench_restores_the_policy():
    import keras

    from supernet import data

    ds = data.synthetic(input_shape=(784,), num_classes=3, num_train=64, num_test=16, validation_size=0)
    result = bench.bench_precision("mixed_bfloat16", ds, num_members=2, hidden=(8,), epochs=1, batch_size=32)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["seconds"] > 0
    assert keras.config.dtype_policy().name == "float32"
