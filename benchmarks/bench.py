"""Fused ensembles against the plain alternatives, measured side by side.

`supernet bench [--quick]` prints a table and writes `reports/benchmarks.md`:

1. fused member training: one `PartitionedMLP` of K members against K
   sequential `model.fit` calls of the same members (same epochs, batch size);
2. SuperNet inference: one fused `predict` against K `predict` calls plus
   averaging;
3. distance to the hardware limit: the fused MLP's training GFLOP/s against
   this machine's dense matmul peak (fp32, and bf16), measured in the same run.

Every number is measured in this process; nothing is carried over from an
earlier run.
"""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from supernet import reports


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _best_of(fn, repeats):
    """Minimum wall time of `repeats` calls (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(dtype="float32", size=2048, repeats=5):
    """GFLOP/s of a square matmul in the backend, the machine's practical peak."""
    import keras
    from keras import ops

    a = ops.cast(keras.random.normal((size, size), seed=1), dtype)
    b = ops.cast(keras.random.normal((size, size), seed=2), dtype)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        matmul = tf.function(lambda: ops.sum(ops.matmul(a, b)), jit_compile=False)
    elif keras.backend.backend() == "jax":
        import jax

        matmul = jax.jit(lambda: ops.sum(ops.matmul(a, b)))
    else:
        matmul = lambda: ops.sum(ops.matmul(a, b))  # noqa: E731
    ops.convert_to_numpy(matmul())
    seconds = _best_of(lambda: ops.convert_to_numpy(matmul()), repeats)
    return 2 * size**3 / seconds / 1e9


def training_flops_per_sample(widths_in_out):
    """Forward + backward FLOPs of dense layers per sample: 6 per weight."""
    return 6 * sum(i * o for i, o in widths_in_out)


def bench_training(num_members, hidden, input_dim, num_classes, num_samples, epochs, batch_size, seed=0):
    """Fused PartitionedMLP fit vs K sequential Sequential fits, same work."""
    import keras

    from supernet.models import PartitionedMLP, mlp

    rng = np.random.default_rng(seed)
    x = rng.random((num_samples, input_dim), dtype=np.float32)
    y = rng.integers(0, num_classes, num_samples)

    def fused_fit(jit_compile):
        model = PartitionedMLP(input_dim, list(hidden), num_classes, num_members=num_members, dropout=0.2)
        model.compile(optimizer="adam", jit_compile=jit_compile)
        model.fit(x[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)  # trace
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
        return model, time.perf_counter() - start

    fused, fused_s = fused_fit("auto")  # Keras's default: no XLA on a CPU-only machine
    _, fused_xla_s = fused_fit(True)

    members = [mlp(input_dim, hidden, num_classes, dropout=0.2) for _ in range(num_members)]
    for m in members:
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        m.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)
    start = time.perf_counter()
    for m in members:
        m.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    sequential_s = time.perf_counter() - start

    dims = [input_dim, *hidden, num_classes]
    flops = training_flops_per_sample(list(zip(dims[:-1], dims[1:]))) * num_members * num_samples * epochs
    return {
        "fused_s": fused_s,
        "fused_xla_s": fused_xla_s,
        "sequential_s": sequential_s,
        "speedup": sequential_s / fused_s,
        "fused_gflops": flops / fused_s / 1e9,
        "members": members,
        "fused": fused,
        "x": x,
    }


def bench_inference(fused, members, x, repeats=3):
    """One fused SuperNet predict vs K member predicts plus averaging."""
    from supernet.models import build_supernet

    supernet = build_supernet(members, downscale=float(len(members)))
    fused_supernet = build_supernet(fused, downscale=float(len(members)))
    for model in (supernet, fused_supernet, *members):
        model.predict(x[:1024], batch_size=1024, verbose=0)

    def separate():
        return np.mean([m.predict(x, batch_size=1024, verbose=0) for m in members], axis=0)

    separate_s = _best_of(separate, repeats)
    supernet_s = _best_of(lambda: supernet.predict(x, batch_size=1024, verbose=0), repeats)
    fused_s = _best_of(lambda: fused_supernet.predict(x, batch_size=1024, verbose=0), repeats)
    n = len(x)
    return {
        "separate_per_s": n / separate_s,
        "supernet_per_s": n / supernet_s,
        "fused_supernet_per_s": n / fused_s,
        "speedup_supernet": separate_s / supernet_s,
        "speedup_fused_supernet": separate_s / fused_s,
    }


def run(quick=False, out_dir="reports", batch_sizes=(128, 512)):
    import keras

    num_samples = 12_000 if quick else 54_000
    epochs = 1 if quick else 2
    hidden = (200, 466, 466)
    rows, lines = [], []

    def say(text):
        print(text, flush=True)
        lines.append(text)

    say(f"Backend {keras.backend.backend()}, keras {keras.__version__}, CPU {_cpu_model()}, {os.cpu_count()} cores")
    peak32 = matmul_peak("float32")
    say(f"fp32 matmul peak: {peak32:.0f} GFLOP/s")
    try:
        peak16 = matmul_peak("bfloat16")
        say(f"bf16 matmul peak: {peak16:.0f} GFLOP/s")
    except Exception as error:  # noqa: BLE001 - report, do not fail, when bf16 is unsupported
        peak16 = None
        say(f"bf16 matmul: unavailable ({type(error).__name__})")

    results = {}
    for batch_size in batch_sizes:
        say(f"training K=6 x {'-'.join(map(str, hidden))}-10 on {num_samples} samples, {epochs} epoch(s), batch {batch_size} ...")
        result = bench_training(6, hidden, 784, 10, num_samples, epochs, batch_size)
        results[batch_size] = result
        say(
            f"  fused {result['fused_s']:.1f}s vs 6 sequential fits {result['sequential_s']:.1f}s: "
            f"{result['speedup']:.2f}x; fused {result['fused_gflops']:.0f} GFLOP/s = "
            f"{100 * result['fused_gflops'] / peak32:.0f}% of fp32 peak"
        )
        rows.append([
            f"fused training, batch {batch_size}",
            f"{result['sequential_s']:.1f} s (6 fits)",
            f"{result['fused_s']:.1f} s",
            f"{result['speedup']:.2f}x",
            ">= 3x",
        ])
        say(f"  fused with jit_compile=True (XLA): {result['fused_xla_s']:.1f}s ({result['fused_s'] / result['fused_xla_s']:.2f}x the default)")
        rows.append([
            f"fused training, XLA (jit_compile=True), batch {batch_size}",
            f"{result['fused_s']:.1f} s (default, no XLA)",
            f"{result['fused_xla_s']:.1f} s",
            f"{result['fused_s'] / result['fused_xla_s']:.2f}x",
            "choose the default",
        ])
        rows.append([
            f"fused training GFLOP/s, batch {batch_size}",
            f"fp32 peak {peak32:.0f}",
            f"{result['fused_gflops']:.0f}",
            f"{100 * result['fused_gflops'] / peak32:.0f}% of peak",
            ">= 50%",
        ])

    last = results[batch_sizes[0]]
    inference = bench_inference(last["fused"], last["members"], last["x"])
    say(
        f"inference: 6 predicts + mean {inference['separate_per_s']:.0f}/s, SuperNet {inference['supernet_per_s']:.0f}/s "
        f"({inference['speedup_supernet']:.2f}x), fused SuperNet {inference['fused_supernet_per_s']:.0f}/s "
        f"({inference['speedup_fused_supernet']:.2f}x)"
    )
    rows.append(["SuperNet inference (samples/s)", f"{inference['separate_per_s']:.0f} (6 predicts + mean)", f"{inference['supernet_per_s']:.0f}", f"{inference['speedup_supernet']:.2f}x", ">= 2x"])
    rows.append(["fused SuperNet inference (samples/s)", f"{inference['separate_per_s']:.0f} (6 predicts + mean)", f"{inference['fused_supernet_per_s']:.0f}", f"{inference['speedup_fused_supernet']:.2f}x", ">= 2x"])

    table = reports.Table(
        title="Benchmarks: fused ensembles vs the plain alternatives",
        columns=["what", "baseline", "supernet", "ratio", "goal"],
        rows=rows,
        caption=(
            f"Measured in one run of `supernet bench{' --quick' if quick else ''}`: backend "
            f"{keras.backend.backend()}, keras {keras.__version__}, CPU {_cpu_model()}, "
            f"{os.cpu_count()} cores; fp32 matmul peak {peak32:.0f} GFLOP/s"
            + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else "")
            + f". Training: {num_samples} samples of 784 features, {epochs} epoch(s), Adam, dropout 0.2."
        ),
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmarks.md"
    path.write_text(reports.to_markdown(table) + "\n## Log\n\n```\n" + "\n".join(lines) + "\n```\n")
    print(f"wrote {path}")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="supernet bench")
    parser.add_argument("--quick", action="store_true", help="smaller data, one epoch")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    run(quick=args.quick, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
