"""Fused ensembles against the plain alternatives, measured side by side.

`supernet bench [--quick] [--scaling]` prints a table and writes
`<out>/benchmarks.md` (`out/` by default; `--out reports` replaces the
committed one):

1. fused member training: one `PartitionedMLP` of K members against K
   sequential `model.fit` calls of the same members (same epochs, batch size),
   and the library's `FusedAdam` against `keras.optimizers.Adam` on the fused
   model (alternating runs, wall and CPU time); then the peers, what
   engineers write instead (`supernet_lab.peers`): one Keras functional model
   of K Dense towers and a pure-JAX ensemble (vmap over stacked members, one
   jitted Adam step; skipped, with the reason, without JAX), in interleaved
   rounds beside the fused model and the K fits on the same Fashion-MNIST
   images, with each one's test accuracy;
2. SuperNet inference: one fused `predict` against K `predict` calls plus
   averaging (interleaved rounds), with both sides' GFLOP/s: they do the
   same arithmetic, so the speedup is the ratio of their matmul efficiency;
3. distance to the hardware limit: the fused MLP's training GFLOP/s against
   this machine's dense matmul peak (fp32, and bf16), measured in the same run,
   with the bottleneck: the step's matmuls alone at the model's shapes (and
   the speedup over the K fits they bound), and the step split into its
   matmuls, the rest of the forward/backward pass, dropout, Adam's update and
   `fit`'s loop, each timed on its own;
4. time to accuracy (thesis Tables 10 and 11): SuperModel vs the best single
   MLP, rendered from the recorded runs of the `table10_11_time_to_accuracy`
   experiment (presets `cpu`, `cpu_long` and `paper`; too long to re-run
   here), with the experiment's verdict on "the SuperModel is faster";
5. Keras backends: the same fused-MLP training epoch and one thesis CNN epoch
   (CIFAR-10 subset) under TensorFlow and under JAX, each in a fresh
   subprocess with `KERAS_BACKEND` set (JAX is skipped, with the reason, when
   it is not installed: `pip install -e ".[jax]"`);
6. with `--scaling`, how cost grows: time per epoch and GFLOP/s of fused
   and sequential training for K = 1, 2, 4, 8, 16 members at two member
   widths, and the peak RSS of each training alone in its own subprocess,
   as a second table.

Every number except the time-to-accuracy rows (labelled with the preset,
seeds and command that recorded them) is measured in this run.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from supernet import reports
from supernet_lab import DEFAULT_OUT


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


def _interleaved_times(fns, rounds):
    """Wall time of each function in each of `rounds` rounds that call them in turn.

    Interleaving gives every function the same share of any change in the
    machine's load, so the ratios are fairer than timing one after another.
    """
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _interleaved_best(fns, rounds):
    """Minimum wall time of each function over `rounds` interleaved rounds."""
    return {name: min(times) for name, times in _interleaved_times(fns, rounds).items()}


def _compiled(fn):
    """`fn` as a graph of the Keras backend (no XLA on TensorFlow), as it is in training."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False)
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def matmul_peak(dtype="float32", sizes=(512, 1024, 2048, 4096), repeats=5):
    """GFLOP/s of the fastest square matmul in the backend, the machine's practical peak.

    The best over `sizes`: which size runs fastest depends on the CPU's
    caches and the number of threads, and a peak taken at one size can sit
    below what the model's own matmuls reach.
    """
    import keras
    from keras import ops

    best = 0.0
    for size in sizes:
        a = ops.cast(keras.random.normal((size, size), seed=1), dtype)
        b = ops.cast(keras.random.normal((size, size), seed=2), dtype)
        matmul = _compiled(lambda a=a, b=b: ops.cast(ops.sum(ops.matmul(a, b)), "float32"))
        ops.convert_to_numpy(matmul())
        seconds = _best_of(lambda: ops.convert_to_numpy(matmul()), repeats)
        best = max(best, 2 * size**3 / seconds / 1e9)
    return best


def _matmul_step(num_members, dims, batch_size):
    """A compiled function running a fused MLP step's matmuls alone, and its FLOPs.

    For each layer the three batched matmuls of a training step (forward,
    input gradient, weight gradient) on member-major `(K, batch, units)`
    operands, nothing else: no optimizer update, dropout, bias or
    activation. FLOPs are counted as in `training_flops_per_sample`.
    """
    import keras
    from keras import ops

    operands = []
    for seed, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        operands.append((
            keras.random.normal((num_members, batch_size, fan_in), seed=3 * seed),
            keras.random.normal((num_members, fan_in, fan_out), seed=3 * seed + 1),
            keras.random.normal((num_members, batch_size, fan_out), seed=3 * seed + 2),
        ))

    def step():
        total = 0.0
        for a, w, g in operands:
            total += ops.sum(ops.matmul(a, w))
            total += ops.sum(ops.matmul(g, ops.transpose(w, (0, 2, 1))))
            total += ops.sum(ops.matmul(ops.transpose(a, (0, 2, 1)), g))
        return total

    step = _compiled(step)
    compiled = lambda: ops.convert_to_numpy(step())  # noqa: E731
    compiled()  # trace
    flops = training_flops_per_sample(list(zip(dims[:-1], dims[1:]))) * num_members * batch_size
    return compiled, flops


def matmul_ceiling(num_members, dims, batch_size, repeats=5):
    """GFLOP/s of a fused MLP step's matmuls alone (`_matmul_step`), at the model's shapes.

    The fused step's GFLOP/s divided by this is the share of the step the
    matmuls could explain; what remains is the measured overhead.
    """
    step, flops = _matmul_step(num_members, dims, batch_size)
    return flops / _best_of(step, repeats) / 1e9


def bench_step_breakdown(num_members, hidden, input_dim, num_classes, num_samples, batch_size, seed=0, rounds=3):
    """Where a fused training step's time goes, each part timed on its own.

    The fused model as the library runs it (`compile(optimizer="adam")`,
    i.e. `FusedAdam`, dropout 0.2) is timed per step five ways, in
    alternating rounds (best of each): a `model.fit` epoch over
    `num_samples`; the forward and backward pass alone (a `tf.function`
    returning the gradients of one batch), with dropout and in inference
    mode (no dropout); the optimizer's update alone (applying fixed
    gradients); and the step's matmuls alone (`_matmul_step`). The step
    then splits, with no part inferred from a different optimizer or
    model, into: the matmuls; the rest of the forward/backward pass (bias,
    activations, loss, element-wise gradients); dropout; the Adam update;
    and what `fit` adds around them (input pipeline, Keras's loop,
    callbacks). TensorFlow backend only; returns None elsewhere.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    from supernet.models import PartitionedMLP

    rng = np.random.default_rng(seed)
    x = rng.random((num_samples, input_dim), dtype=np.float32)
    y = rng.integers(0, num_classes, num_samples)
    model = PartitionedMLP(input_dim, list(hidden), num_classes, num_members=num_members, dropout=0.2)
    model.compile(optimizer="adam")
    model.fit(x[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)  # trace
    steps = -(-num_samples // batch_size)
    x_batch, y_batch = tf.constant(x[:batch_size]), tf.constant(y[:batch_size])

    def gradients(training):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y_pred = model(x_batch, training=training)
                loss = model.compute_loss(x=x_batch, y=y_batch, y_pred=y_pred, training=training)
            return tape.gradient(loss, model.trainable_variables)

        return step

    with_dropout, without_dropout = gradients(True), gradients(False)
    fixed = with_dropout()
    update = tf.function(lambda: model.optimizer.apply(fixed, model.trainable_variables))
    without_dropout(), update()  # trace
    matmuls, _ = _matmul_step(num_members, [input_dim, *hidden, num_classes], batch_size)

    def repeat(fn):
        def run():
            for _ in range(steps):
                fn()

        return run

    best = _interleaved_best(
        {
            "fit": lambda: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0),
            "forward_backward": repeat(with_dropout),
            "forward_backward_no_dropout": repeat(without_dropout),
            "adam": repeat(update),
            "matmuls": repeat(matmuls),
        },
        rounds,
    )
    per_step = {name: seconds / steps for name, seconds in best.items()}
    parts = {
        "matmuls": per_step["matmuls"],
        "other_forward_backward": per_step["forward_backward_no_dropout"] - per_step["matmuls"],
        "dropout": per_step["forward_backward"] - per_step["forward_backward_no_dropout"],
        "adam": per_step["adam"],
        "fit_loop": per_step["fit"] - per_step["forward_backward"] - per_step["adam"],
    }
    return {
        "step_s": per_step["fit"],
        "seconds_per_step": per_step,
        "shares": {name: seconds / per_step["fit"] for name, seconds in parts.items()},
    }


def training_flops_per_sample(widths_in_out):
    """Forward + backward FLOPs of dense layers per sample: 6 per weight."""
    return 6 * sum(i * o for i, o in widths_in_out)


def bench_training(num_members, hidden, input_dim, num_classes, num_samples, epochs, batch_size, seed=0, rounds=2,
                   steps_per_execution=32):
    """Fused PartitionedMLP fit vs K sequential Sequential fits, same work.

    Also times the fused fit with `compile(steps_per_execution=...)`, which
    runs that many steps per call of the compiled train function and so
    pays `fit`'s per-step Python and dispatch cost once per group, with
    dropout masks drawn from random bytes (`dropout_masks="bytes"`), and
    with both.
    """
    import keras

    from supernet.models import PartitionedMLP, mlp

    rng = np.random.default_rng(seed)
    x = rng.random((num_samples, input_dim), dtype=np.float32)
    y = rng.integers(0, num_classes, num_samples)

    def fused_fit(jit_compile, optimizer="adam", steps=1, masks="floats"):
        model = PartitionedMLP(
            input_dim, list(hidden), num_classes, num_members=num_members, dropout=0.2, dropout_masks=masks
        )
        model.compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=steps)
        warm_up = batch_size * 2 * steps
        model.fit(x[:warm_up], y[:warm_up], batch_size=batch_size, epochs=1, verbose=0)  # trace
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
        return model, time.perf_counter() - start, time.process_time() - cpu

    # Library defaults: "adam" is supernet's FusedAdam; no XLA on a CPU-only machine.
    # The same fused model with the baseline's optimizer, keras.optimizers.Adam,
    # separates the gain of fusing the members from that of the fused update;
    # the two alternate over `rounds` (best wall time of each, its CPU time).
    runs = {"fused": [], "keras_adam": [], "steps": [], "bytes": [], "bytes_steps": []}
    for _ in range(rounds):
        runs["fused"].append(fused_fit("auto"))
        runs["keras_adam"].append(fused_fit("auto", keras.optimizers.Adam()))
        runs["steps"].append(fused_fit("auto", steps=steps_per_execution))
        runs["bytes"].append(fused_fit("auto", masks="bytes"))
        runs["bytes_steps"].append(fused_fit("auto", steps=steps_per_execution, masks="bytes"))
    fused, fused_s, fused_cpu_s = min(runs["fused"], key=lambda run: run[1])
    _, fused_keras_adam_s, fused_keras_adam_cpu_s = min(runs["keras_adam"], key=lambda run: run[1])
    _, fused_steps_s, fused_steps_cpu_s = min(runs["steps"], key=lambda run: run[1])
    _, fused_bytes_s, fused_bytes_cpu_s = min(runs["bytes"], key=lambda run: run[1])
    _, fused_bytes_steps_s, fused_bytes_steps_cpu_s = min(runs["bytes_steps"], key=lambda run: run[1])
    _, fused_xla_s, _ = fused_fit(True)

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
        "fused_keras_adam_s": fused_keras_adam_s,
        "fused_cpu_s": fused_cpu_s,
        "fused_keras_adam_cpu_s": fused_keras_adam_cpu_s,
        "fused_steps_s": fused_steps_s,
        "fused_steps_cpu_s": fused_steps_cpu_s,
        "steps_per_execution": steps_per_execution,
        "fused_bytes_s": fused_bytes_s,
        "fused_bytes_cpu_s": fused_bytes_cpu_s,
        "fused_bytes_steps_s": fused_bytes_steps_s,
        "fused_bytes_steps_cpu_s": fused_bytes_steps_cpu_s,
        "sequential_s": sequential_s,
        "speedup": sequential_s / fused_s,
        "fused_gflops": flops / fused_s / 1e9,
        "members": members,
        "fused": fused,
        "x": x,
    }


def bench_inference(fused, members, x, rounds=9):
    """One fused SuperNet predict vs K member predicts plus averaging.

    The three paths are timed in `rounds` interleaved rounds. Throughputs are
    the best round of each; a speedup is the median over rounds of the
    ratio measured within one round (with its range), which a single noisy
    round cannot move. GFLOP/s count the members' multiply-adds (2 FLOPs
    each) and the head's: all paths do the same arithmetic, so the speedup
    is the ratio of how close each runs to the machine's matmul peak.
    """
    from supernet.models import build_supernet

    supernet = build_supernet(members, downscale=float(len(members)))
    fused_supernet = build_supernet(fused, downscale=float(len(members)))
    for model in (supernet, fused_supernet, *members):
        model.predict(x[:1024], batch_size=1024, verbose=0)

    def separate():
        return np.mean([m.predict(x, batch_size=1024, verbose=0) for m in members], axis=0)

    times = _interleaved_times(
        {
            "separate": separate,
            "supernet": lambda: supernet.predict(x, batch_size=1024, verbose=0),
            "fused": lambda: fused_supernet.predict(x, batch_size=1024, verbose=0),
        },
        rounds,
    )
    best = {name: min(values) for name, values in times.items()}
    ratios = {name: np.asarray(times["separate"]) / np.asarray(times[name]) for name in ("supernet", "fused")}
    dense = [layer for layer in members[0].layers if layer.weights and len(layer.weights[0].shape) == 2]
    member_flops = sum(2 * int(np.prod(layer.weights[0].shape)) for layer in dense)
    head_flops = 2 * int(np.prod(fused_supernet.layers[-1].weights[0].shape))
    n = len(x)
    return {
        "rounds": rounds,
        "separate_per_s": n / best["separate"],
        "supernet_per_s": n / best["supernet"],
        "fused_supernet_per_s": n / best["fused"],
        "speedup_supernet": float(np.median(ratios["supernet"])),
        "speedup_fused_supernet": float(np.median(ratios["fused"])),
        "speedup_range_supernet": (float(ratios["supernet"].min()), float(ratios["supernet"].max())),
        "speedup_range_fused_supernet": (float(ratios["fused"].min()), float(ratios["fused"].max())),
        "separate_gflops": len(members) * member_flops * n / best["separate"] / 1e9,
        "fused_supernet_gflops": (len(members) * member_flops + head_flops) * n / best["fused"] / 1e9,
    }


def _benchmark_data(num_samples, seed=0, full_test=False):
    """Fashion-MNIST (mirror or download) when available, else generated data.

    `num_samples` training images; the test set is subsampled in proportion,
    or all 10,000 images with `full_test` (accuracies compared within a
    point need them).
    """
    from supernet import data

    try:
        ds = data.fashion_mnist(subset=num_samples, validation_size=0, seed=seed)
        if full_test:
            full = data.fashion_mnist(validation_size=0)
            ds = dataclasses.replace(ds, x_test=full.x_test, y_test=full.y_test)
        return ds, "Fashion-MNIST"
    except Exception as error:  # noqa: BLE001 - keras.utils.get_file raises a bare Exception offline
        num_test = 10_000 if full_test else 2000
        ds = data.synthetic(input_shape=(784,), num_classes=10, num_train=num_samples, num_test=num_test, validation_size=0, seed=seed)
        return ds, f"synthetic data (Fashion-MNIST unavailable: {type(error).__name__})"


def bench_precision(policy, ds, *, num_members=6, hidden=(200, 466, 466), epochs=2, batch_size=512, seed=0):
    """Fused training time and softmax-vote test accuracy under a dtype policy."""
    import keras

    from supernet.models import PartitionedMLP

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model = PartitionedMLP(ds.input_shape[0], list(hidden), ds.num_classes, num_members=num_members, dropout=0.2)
        model.compile(optimizer="adam")
        model.fit(ds.x_train[: batch_size * 2], ds.y_train[: batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(ds.x_train, ds.y_train, batch_size=batch_size, epochs=epochs, verbose=0)
        seconds = time.perf_counter() - start
        probs = np.asarray(model.predict(ds.x_test, batch_size=1024, verbose=0), dtype="float32").mean(axis=1)
    finally:
        keras.config.set_dtype_policy(previous)
    return {"seconds": seconds, "accuracy": float(np.mean(probs.argmax(axis=-1) == ds.y_test))}


# The contenders of `bench_peers`, in the order they run and are reported.
PEERS = {
    "sequential": "{k} sequential keras.Sequential fits",
    "fused": "supernet PartitionedMLP",
    "fused_fast": 'supernet PartitionedMLP, dropout_masks="bytes", steps_per_execution=32',
    "towers": "Keras functional model of {k} Dense towers",
    "jax": "pure JAX: stacked members, vmap, one jitted Adam step",
}
ACCURACY_TOLERANCE = 0.02  # peers whose test accuracy differs more from the K fits' get a warning


def _contender(name, num_members, hidden, input_dim, num_classes, batch_size, dropout=0.2, seed=0):
    """One way to train K MLP members of `hidden` widths with Adam (Keras's defaults).

    `name` is a key of `PEERS`: K `keras.Sequential` members fitted one after
    another; one `PartitionedMLP` (the library default, `FusedAdam`), as
    built by default or with byte dropout masks and 32 steps per execution
    (`fused_fast`); one functional model of K Dense towers
    (`peers.tower_model`); or pure JAX (`peers.JaxEnsemble`).

    Returns:
        `(train, predict)`: `train(x, y)` runs one epoch at `batch_size`,
        `predict(x)` returns the members' `(batch, K, classes)` probabilities.

    Raises:
        ImportError: for `"jax"` when JAX is not installed.
    """
    from supernet_lab import peers

    if name == "jax":
        ensemble = peers.JaxEnsemble(input_dim, hidden, num_classes, num_members, dropout=dropout, seed=seed)
        return (lambda x, y: ensemble.fit_epoch(x, y, batch_size)), ensemble.predict

    from supernet.models import PartitionedMLP, mlp

    def fit(model, x, targets):
        model.fit(x, targets, batch_size=batch_size, epochs=1, verbose=0)

    def predict(model, x):
        return model.predict(x, batch_size=1024, verbose=0)

    if name == "sequential":
        members = [mlp(input_dim, hidden, num_classes, dropout=dropout) for _ in range(num_members)]
        for member in members:
            member.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return (
            lambda x, y: [fit(member, x, y) for member in members],
            lambda x: np.stack([predict(member, x) for member in members], axis=1),
        )
    if name in ("fused", "fused_fast"):
        fast = name == "fused_fast"
        model = PartitionedMLP(
            input_dim, list(hidden), num_classes, num_members=num_members, dropout=dropout,
            dropout_masks="bytes" if fast else "floats",
        )
        model.compile(optimizer="adam", steps_per_execution=32 if fast else 1)
        return (lambda x, y: fit(model, x, y)), (lambda x: predict(model, x))
    if name == "towers":
        model = peers.tower_model(input_dim, hidden, num_classes, num_members, dropout=dropout)
        model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy"] * num_members)
        return (lambda x, y: fit(model, x, [y] * num_members)), (lambda x: np.stack(predict(model, x), axis=1))
    raise ValueError(f"Argument `name` must be one of {list(PEERS)}. Received: name={name!r}")


def _warm_up(train, x, y, batch_size):
    """Trains on two full batches and one of the epoch's last, partial size: every batch shape traced."""
    warm = batch_size * 2 + len(x) % batch_size
    train(x[:warm], y[:warm])


def bench_peers(ds, num_members, hidden, batch_size, rounds=3, dropout=0.2, seed=0):
    """The fused model against what engineers write instead, on the same work.

    The contenders of `PEERS` (`_contender`) train the same K members on
    `ds`'s training set: the same architecture, dropout, Adam settings,
    batch size and number of steps. Each first trains on the same warm-up
    batches (`_warm_up`: tracing and compilation), then `rounds` interleaved
    rounds train each one epoch more, in turn. Afterwards each one's test
    accuracy (the softmax vote of its members) shows whether it learned as
    much as the others. The pure-JAX contender is skipped, with the reason,
    when JAX is not installed.

    Returns:
        `{name: {"times": [seconds of each round's epoch], "accuracy": ...}}`
        in the order of `PEERS`, `{name: {"skipped": reason}}` for a
        contender that could not run.
    """
    import keras

    keras.utils.set_random_seed(seed)
    x, y = ds.x_train, ds.y_train
    contenders, results = {}, {}
    for name in PEERS:
        try:
            contenders[name] = _contender(name, num_members, hidden, x.shape[1], ds.num_classes, batch_size, dropout, seed)
        except ImportError as error:
            results[name] = {"skipped": str(error)}
    for train, _ in contenders.values():
        _warm_up(train, x, y, batch_size)
    times = _interleaved_times({name: (lambda train=train: train(x, y)) for name, (train, _) in contenders.items()}, rounds)
    for name, (_, predict) in contenders.items():
        votes = predict(ds.x_test).mean(axis=1).argmax(axis=-1)
        results[name] = {"times": times[name], "accuracy": float(np.mean(votes == ds.y_test))}
    return {name: results[name] for name in PEERS}


def accuracy_warnings(results, num_members, tolerance=ACCURACY_TOLERANCE):
    """One message per contender whose test accuracy is more than `tolerance` from the K fits'."""
    base = results["sequential"]["accuracy"]
    return [
        f"warning: {PEERS[name].format(k=num_members)} reached {100 * result['accuracy']:.2f}% test accuracy, "
        f"the {num_members} sequential fits {100 * base:.2f}%: more than {100 * tolerance:.0f} points apart, "
        "so their times may not be for the same work"
        for name, result in results.items()
        if "accuracy" in result and abs(result["accuracy"] - base) > tolerance
    ]


def peer_report(results, num_members, batch_size, backend=None):
    """Log lines and table rows of `bench_peers`: each contender's time per epoch beside the K fits'.

    Times are the best, median and slowest epoch over the rounds; a ratio is
    the median over rounds of two contenders' epochs measured within one
    round, with its range: each contender against the K fits, then the
    fused model against each peer. `backend` names the Keras backend in the
    rows when it is not the report's own.
    """

    def ratio(slower, faster):
        ratios = np.asarray(results[slower]["times"]) / np.asarray(results[faster]["times"])
        return f"{np.median(ratios):.2f}x (rounds {ratios.min():.2f}-{ratios.max():.2f}x)"

    section = f"peers{f' ({backend} backend)' if backend else ''}, batch {batch_size}"
    base = np.asarray(results["sequential"]["times"])
    lines, rows = [], []
    for name, result in results.items():
        label = PEERS[name].format(k=num_members)
        what = f"{section}: {label}"
        baseline = f"{base.min():.2f} s per epoch ({num_members} fits)"
        if "skipped" in result:
            lines.append(f"  {label}: skipped ({result['skipped']})")
            rows.append([what, baseline, f"skipped: {result['skipped']}", "—", "report"])
            continue
        times = np.asarray(result["times"])
        timing = f"best {times.min():.2f} s, median {np.median(times):.2f} s, slowest {times.max():.2f} s per epoch"
        accuracy = f"test acc {100 * result['accuracy']:.2f}%"
        lines.append(f"  {label}: {timing}, {ratio('sequential', name)} the fits, {accuracy}")
        goal = {"sequential": "baseline", "fused": ">= 3x", "fused_fast": ">= 3x"}.get(name, "report")
        rows.append([what, baseline, f"{timing}; {accuracy}", ratio("sequential", name), goal])
    measured_peers = [name for name in ("towers", "jax") if "times" in results[name]]
    for fused in ("fused", "fused_fast"):
        if not measured_peers or "times" not in results.get(fused, {}):
            continue
        against = "; ".join(f"{PEERS[name].format(k=num_members)} {ratio(name, fused)}" for name in measured_peers)
        lines.append(f"  {PEERS[fused]} against each peer (peer's epoch / fused epoch): {against}")
        rows.append([f"{section}: {PEERS[fused]} against each peer", "the peer's epoch",
                     "the fused epoch", against, ">= 1x each"])
    lines += ["  " + warning for warning in accuracy_warnings(results, num_members)]
    return lines, rows


def _peers_worker(spec):
    """Runs in a subprocess whose `KERAS_BACKEND` is set: `bench_peers` at each batch size."""
    ds, _ = _benchmark_data(spec["num_samples"], full_test=True)
    hidden = tuple(spec["hidden"])
    results = {
        str(batch_size): bench_peers(ds, spec["num_members"], hidden, batch_size, rounds=spec["rounds"])
        for batch_size in spec["batch_sizes"]
    }
    return {"results": results}


def bench_peers_backend(backend, batch_sizes, *, num_members=6, hidden=(200, 466, 466), num_samples=27_000, rounds=5,
                        timeout=3600):
    """`bench_peers` under another Keras backend, in a subprocess.

    The backend is fixed once Keras is imported, so the contenders built on
    Keras (the K fits, `PartitionedMLP`, the K-tower model) run there under
    `KERAS_BACKEND=backend`, on the same data and protocol as in the main
    process; the pure-JAX contender is the same code under either.

    Returns:
        `{"results": {str(batch_size): bench_peers result}}`, or
        `{"skipped": reason}` when the backend is not installed or the
        subprocess fails.
    """
    spec = {"num_members": num_members, "hidden": list(hidden), "num_samples": num_samples, "rounds": rounds,
            "batch_sizes": list(batch_sizes)}
    return _run_worker("peers", spec, backend, timeout)


SCALING_MEMBERS = (1, 2, 4, 8, 16)
SCALING_WIDTHS = ((200, 466, 466), (50, 116, 116))


def _peak_rss_mb():
    """This process's peak resident set size so far, in MB.

    On Linux, `VmHWM` of /proc/self/status: `getrusage`'s max RSS survives
    `exec`, so a subprocess started from a big process would report its
    parent's peak; `VmHWM` belongs to the process's own memory map.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _scaling_data(num_samples, input_dim, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((num_samples, input_dim), dtype=np.float32), rng.integers(0, num_classes, num_samples)


def _rss_worker(spec):
    """Runs in a fresh subprocess: one contender's training, and the process's peak RSS.

    `base_mb` is the peak after importing Keras and the library and making
    the data, before any model exists; `peak_mb` after the warm-up and one
    epoch.
    """
    import keras  # noqa: F401 - the backend's own memory belongs to the base

    import supernet.models  # noqa: F401

    x, y = _scaling_data(spec["num_samples"], spec["input_dim"], spec["num_classes"])
    base = _peak_rss_mb()
    train, _ = _contender(spec["contender"], spec["num_members"], tuple(spec["hidden"]), spec["input_dim"],
                          spec["num_classes"], spec["batch_size"])
    _warm_up(train, x, y, spec["batch_size"])
    train(x, y)
    # The kernel's RSS counters are approximate (per-CPU caches of a few
    # pages), so a later reading of the high-water mark can come out a
    # fraction of a MB below an earlier one; the true mark never goes down.
    return {"base_mb": base, "peak_mb": max(base, _peak_rss_mb())}


def training_rss(contender, num_members, hidden, num_samples, batch_size, input_dim=784, num_classes=10, timeout=1800):
    """Peak RSS of one contender's training (`_rss_worker`), alone in a fresh subprocess.

    A process's peak RSS never goes down, so each contender gets its own
    process: one's memory cannot count in another's.

    Returns:
        `{"base_mb", "peak_mb"}`, or `{"skipped": reason}`.
    """
    import keras

    spec = {"contender": contender, "num_members": num_members, "hidden": list(hidden), "num_samples": num_samples,
            "batch_size": batch_size, "input_dim": input_dim, "num_classes": num_classes}
    return _run_worker("rss", spec, keras.backend.backend(), timeout)


def bench_scaling(member_counts=SCALING_MEMBERS, widths=SCALING_WIDTHS, num_samples=12_000, batch_size=128,
                  rounds=3, input_dim=784, num_classes=10, memory=True):
    """How the cost of fused and sequential training grows with the number of members.

    For each member width and K: a `PartitionedMLP` epoch against K
    sequential fits (`_contender`; random data, dropout 0.2, Adam), after a
    warm-up, in `rounds` interleaved rounds (best of each); GFLOP/s as in
    `training_flops_per_sample`; and, with `memory`, the peak RSS of each
    one's training alone in its own subprocess (`training_rss`).

    Returns:
        One dict per width and K: `hidden`, `num_members`, `sequential_s`,
        `fused_s`, `speedup`, `sequential_gflops`, `fused_gflops`, and
        `sequential_rss`, `fused_rss` (`training_rss`'s dicts) with `memory`.
    """
    x, y = _scaling_data(num_samples, input_dim, num_classes)
    results = []
    for hidden in widths:
        dims = [input_dim, *hidden, num_classes]
        for num_members in member_counts:
            trains = {}
            for name in ("sequential", "fused"):
                trains[name], _ = _contender(name, num_members, hidden, input_dim, num_classes, batch_size)
                _warm_up(trains[name], x, y, batch_size)
            best = _interleaved_best({name: (lambda train=train: train(x, y)) for name, train in trains.items()}, rounds)
            flops = training_flops_per_sample(list(zip(dims[:-1], dims[1:]))) * num_members * num_samples
            result = {"hidden": list(hidden), "num_members": num_members, "speedup": best["sequential"] / best["fused"]}
            for name in trains:
                result[f"{name}_s"] = best[name]
                result[f"{name}_gflops"] = flops / best[name] / 1e9
                if memory:
                    result[f"{name}_rss"] = training_rss(name, num_members, hidden, num_samples, batch_size, input_dim, num_classes)
            results.append(result)
    return results


def _payoff_notes(results):
    """Per member width: where the fused model's speedup over the K fits peaks, and where it is below 1x."""
    notes = []
    for hidden in dict.fromkeys(tuple(r["hidden"]) for r in results):
        speedups = {r["num_members"]: r["speedup"] for r in results if tuple(r["hidden"]) == hidden}
        peak, largest = max(speedups, key=speedups.get), max(speedups)
        text = f"Members of {'-'.join(map(str, hidden))}: fused training's largest speedup over the sequential fits is {speedups[peak]:.2f}x, at K={peak}"
        if largest != peak:
            text += f"; {speedups[largest]:.2f}x at K={largest}"
        slower = [str(k) for k, speedup in speedups.items() if speedup < 1]
        text += f"; slower than the sequential fits at K={', '.join(slower)}." if slower else "; faster than the sequential fits at every K measured."
        notes.append(text)
    return notes


def scaling_table(results, caption):
    """The `bench_scaling` results as a `reports.Table`, one row per member width and K."""

    def rss(measured):
        if measured is None:
            return "not measured"
        if "skipped" in measured:
            return f"skipped: {measured['skipped']}"
        return f"{measured['peak_mb']:.0f} MB (+{measured['peak_mb'] - measured['base_mb']:.0f})"

    rows = [
        [
            "-".join(map(str, r["hidden"])),
            r["num_members"],
            f"{r['sequential_s']:.2f} s",
            f"{r['fused_s']:.2f} s",
            f"{r['speedup']:.2f}x",
            f"{r['sequential_gflops']:.1f}",
            f"{r['fused_gflops']:.1f}",
            rss(r.get("sequential_rss")),
            rss(r.get("fused_rss")),
        ]
        for r in results
    ]
    return reports.Table(
        title="Scaling: fused vs sequential training as the number of members K grows",
        columns=["member widths", "K", "K sequential fits, per epoch", "fused, per epoch", "speedup",
                 "GFLOP/s sequential", "GFLOP/s fused", "peak RSS sequential", "peak RSS fused"],
        rows=rows,
        caption=caption,
        footnotes=_payoff_notes(results),
    )


TIME_TO_ACCURACY = "table10_11_time_to_accuracy"


def _faster_finding(tag, preset, runs):
    """The experiment's judgement of "the SuperModel is faster" (CPU time ratio < 1) over `runs`, in words."""
    from supernet_lab import findings, runner

    experiment = runner.load_module(TIME_TO_ACCURACY)

    claim = next(c for c in experiment.CLAIMS if c.id == f"{tag}_supermodel_faster")
    found = findings.judge(TIME_TO_ACCURACY, preset, claim, runs)
    interval = "" if found.low is None else f", 95% interval [{found.low:.2f}, {found.high:.2f}]"
    return f"ratio < 1: {found.verdict} ({found.n} seed{'s' if found.n != 1 else ''}{interval})"


def time_to_accuracy_rows(results_dir, presets=("cpu", "cpu_long", "paper")):
    """Table rows and footnotes from the recorded time-to-accuracy runs.

    One row per preset and dataset: the SuperModel's and the best single
    MLP's CPU time to the target validation accuracy, mean over the seeds
    where both reached it, the mean SuperModel / single CPU ratio (wall
    ratio beside it) and the experiment's verdict on "the SuperModel is
    faster" with its interval over those seeds. Seeds where only the
    SuperModel reached the target bound the ratio from above by SuperModel
    time / the single net's whole training stage, as the experiment's own
    report does.

    Returns:
        `(rows, footnotes)`; no rows when nothing is recorded.
    """
    path = Path(results_dir) / f"{TIME_TO_ACCURACY}.jsonl"
    records = reports.ResultsStore(path).read() if path.exists() else []
    runs = [r for r in reports.latest_runs(records) if r.get("status", "ok") == "ok"]
    rows, notes = [], []
    datasets = (("fmnist", "Fashion-MNIST"), ("tng", "20 Newsgroups"))
    for preset in presets:
        chosen = [r for r in runs if r.get("preset") == preset]
        if not chosen:
            continue
        seeds = sorted({r["seed"] for r in chosen})
        seed_text = ",".join(map(str, seeds))
        commits = sorted({str(r.get("git_commit") or "?")[:7] for r in chosen})
        config = chosen[-1]["config"]
        for tag, dataset in datasets:
            both = [r for r in chosen if r["metrics"][tag]["ratio"]["cpu_s"] is not None]
            only_super = [r for r in chosen if r["metrics"][tag]["supermodel"]["reached"]
                          and not r["metrics"][tag]["single"]["reached"]]
            target = chosen[-1]["metrics"][tag]["target"]
            units = {kind: "-".join(map(str, config[f"{tag}_{kind}_units"])) for kind in ("single", "member")}
            what = (f"time to {target:.0%} val acc, {dataset}: SuperModel {config['num_members']} x "
                    f"{units['member']} vs single {units['single']} (recorded, preset {preset}, seeds {seed_text})")
            reached = (f"reached in {len(both)} of {len(chosen)} seeds" if both else "")
            if both:
                single_cpu = np.mean([r["metrics"][tag]["single"]["cpu_s"] for r in both])
                super_cpu = np.mean([r["metrics"][tag]["supermodel"]["cpu_s"] for r in both])
                ratio_cpu = np.mean([r["metrics"][tag]["ratio"]["cpu_s"] for r in both])
                ratio_wall = np.mean([r["metrics"][tag]["ratio"]["wall_s"] for r in both])
                # Epochs to the target: with equal epochs the ratio is the per-epoch cost ratio.
                epochs = {kind: np.mean([r["metrics"][tag][kind]["reached_epoch"] for r in both]) for kind in ("single", "supermodel")}
                rows.append([what, f"{single_cpu:.1f} s CPU, {epochs['single']:.1f} epochs ({reached})",
                             f"{super_cpu:.1f} s CPU, {epochs['supermodel']:.1f} epochs",
                             f"{ratio_cpu:.2f} CPU, {ratio_wall:.2f} wall", _faster_finding(tag, preset, chosen)])
            elif only_super:
                bound = max(r["metrics"][tag]["supermodel"]["cpu_s"] / r["timings"][f"single_{tag}"]["cpu_s"]
                            for r in only_super)
                super_cpu = np.mean([r["metrics"][tag]["supermodel"]["cpu_s"] for r in only_super])
                cap = config[f"{tag}_max_epochs"]
                rows.append([what, f"not reached in {cap} epochs ({len(only_super)} of {len(chosen)} seeds)",
                             f"{super_cpu:.1f} s CPU", f"<= {bound:.2f} CPU (bound)", _faster_finding(tag, preset, chosen)])
            else:
                cap = config[f"{tag}_max_epochs"]
                rows.append([what, f"no seed with both at the target in {cap} epochs", "—", "—",
                             _faster_finding(tag, preset, chosen)])
        notes.append(
            f"Time-to-accuracy rows of preset `{preset}`: recorded by `supernet run {TIME_TO_ACCURACY} --preset "
            f"{preset} --seeds {seed_text}` (commit {', '.join(commits)}), read from {path.name}; not re-run by "
            "this benchmark. CPU time is training only (per-epoch scoring and data loading excluded); ratio = "
            "SuperModel / single, mean over the seeds where both reached the target; '(bound)' = SuperModel time / "
            "the single net's whole training stage, for seeds where only the SuperModel reached the target. "
            f"Full tables: `supernet report` ({TIME_TO_ACCURACY}/)."
        )
    return rows, notes


def _backend_worker(spec):
    """Runs in a subprocess whose `KERAS_BACKEND` is set: times both workloads."""
    import keras

    import supernet
    from supernet.models import PartitionedMLP

    result = {"backend": keras.backend.backend(), "keras": keras.__version__}
    rng = np.random.default_rng(0)
    hidden, batch_size = tuple(spec["hidden"]), spec["batch_size"]
    x = rng.random((spec["mlp_samples"], 784), dtype=np.float32)
    y = rng.integers(0, 10, spec["mlp_samples"])
    keras.utils.set_random_seed(0)
    model = PartitionedMLP(784, list(hidden), 10, num_members=spec["num_members"], dropout=0.2, seed=0)
    model.compile(optimizer="adam")
    start = time.perf_counter()
    # Warm up on the full and the last, partial batch shape: JAX compiles one program per shape.
    warm = batch_size * 2 + len(x) % batch_size
    model.fit(x[:warm], y[:warm], batch_size=batch_size, epochs=1, verbose=0)
    result["mlp_trace_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    result["mlp_epoch_s"] = time.perf_counter() - start
    dims = [784, *hidden, 10]
    flops = training_flops_per_sample(list(zip(dims[:-1], dims[1:]))) * spec["num_members"] * len(x)
    result["mlp_gflops"] = flops / result["mlp_epoch_s"] / 1e9

    images = spec["cnn_images"]
    if os.environ.get("SUPERNET_DATA_DIR"):
        try:
            ds = supernet.data.cifar10(subset=images, validation_size=0)
            result["cnn_data"] = f"CIFAR-10, {len(ds.x_train)} training images"
        except (OSError, ValueError) as error:
            ds = None
            result["cnn_data_note"] = f"CIFAR-10 unavailable ({type(error).__name__}: {error})"
    else:
        ds = None
        result["cnn_data_note"] = "CIFAR-10 unavailable (SUPERNET_DATA_DIR is not set)"
    if ds is None:
        ds = supernet.data.synthetic(num_classes=10, input_shape=(32, 32, 3), num_train=images, validation_size=0)
        result["cnn_data"] = f"synthetic 32x32x3 stand-in for CIFAR-10, {len(ds.x_train)} images"
    keras.utils.set_random_seed(0)
    cnn = supernet.models.thesis_cnn(num_classes=10)
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cnn_batch = spec["cnn_batch_size"]
    start = time.perf_counter()
    warm = cnn_batch * 2 + len(ds.x_train) % cnn_batch
    cnn.fit(ds.x_train[:warm], ds.y_train[:warm], batch_size=cnn_batch, epochs=1, verbose=0)
    result["cnn_trace_s"] = time.perf_counter() - start
    start = time.perf_counter()
    cnn.fit(ds.x_train, ds.y_train, batch_size=cnn_batch, epochs=1, verbose=0)
    result["cnn_epoch_s"] = time.perf_counter() - start
    result["cnn_images"] = len(ds.x_train)
    return result


def bench_backend(backend, *, num_members=6, hidden=(200, 466, 466), mlp_samples=6000, batch_size=256,
                  cnn_images=2000, cnn_batch_size=128, timeout=1800):
    """Fused-MLP epoch and thesis-CNN epoch timed under one Keras backend.

    Runs `_backend_worker` in a subprocess with `KERAS_BACKEND=backend`, since
    the backend is fixed once Keras is imported. Each timing excludes a first
    `fit` on two full batches and one of the epoch's last, partial size
    (tracing / XLA compilation of every batch shape), reported separately.

    Returns:
        The worker's dict (`mlp_epoch_s`, `mlp_gflops`, `cnn_epoch_s`,
        `cnn_data`, ...), or `{"backend": backend, "skipped": reason}` when the
        backend is not installed or the subprocess fails.
    """
    spec = {
        "num_members": num_members, "hidden": list(hidden), "mlp_samples": mlp_samples,
        "batch_size": batch_size, "cnn_images": cnn_images, "cnn_batch_size": cnn_batch_size,
    }
    return {"backend": backend, **_run_worker("backend", spec, backend, timeout)}


def _run_worker(worker, spec, backend, timeout):
    """Runs `python -m supernet_lab.bench --<worker>-worker JSON(spec)` with `KERAS_BACKEND=backend`.

    A fresh process: the backend is fixed once Keras is imported, and a
    process's peak memory is its own.

    Returns:
        The worker's dict, or `{"skipped": reason}` when the backend is not
        installed or the worker fails or times out.
    """
    if importlib.util.find_spec(backend) is None:
        return {"skipped": f"{backend} is not importable (pip install -e \".[{backend}]\")"}
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "supernet_lab.bench", f"--{worker}-worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"worker failed (exit {done.returncode}): {tail}"}
    return json.loads(lines[-1][len("RESULT "):])


def _backend_rows(results, spec_text, cnn_text):
    """Table rows: the first backend (TensorFlow) as the baseline, each other beside it."""
    base, others = results[0], results[1:] or [{"backend": "—", "skipped": "not run"}]

    def cell(result, key):
        return f"{result['backend']}: skipped" if "skipped" in result else f"{result['backend']} {result[key]:.2f} s"

    rows = []
    for other in others:
        for key, what in (("mlp_epoch_s", f"backend: fused MLP training epoch ({spec_text})"),
                          ("cnn_epoch_s", f"backend: thesis CNN epoch ({cnn_text})")):
            measured = "skipped" not in base and "skipped" not in other
            ratio = f"{base[key] / other[key]:.2f}x" if measured else "—"
            rows.append([what, cell(base, key), cell(other, key), ratio, "report"])
    return rows


def run(quick=False, out_dir=DEFAULT_OUT, batch_sizes=(128, 512), backends=("tensorflow", "jax"), results_dir="reports/results",
        scaling=False):
    """Run every measurement and write `<out_dir>/benchmarks.md`.

    Args:
        quick: 12,000 samples and one epoch instead of 54,000 and two; the
            peers on 6,000 images in 2 rounds instead of 27,000 in 5; the
            scaling table at K = 1, 2 and two small widths.
        out_dir: folder of the report.
        batch_sizes: batch sizes of the fused-training and peer rows.
        backends: Keras backends of the backend rows, each in a subprocess;
            the peer rows are also measured under each of them that is not
            the main process's backend.
        results_dir: where the recorded `table10_11_time_to_accuracy` runs are
            read from (the committed ones by default).
        scaling: also measure the scaling table (`bench_scaling`), written
            after the main table.

    Returns:
        The path of the report.
    """
    import keras

    num_samples = 12_000 if quick else 54_000
    epochs = 1 if quick else 2
    hidden = (200, 466, 466)
    rows, lines = [], []

    def say(text):
        print(text, flush=True)
        lines.append(text)

    meta = reports.run_metadata()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    commit = meta["git_commit"][:7] + (" with uncommitted changes" if meta["git_dirty"] else "")
    say(f"Backend {keras.backend.backend()}, keras {keras.__version__}, CPU {_cpu_model()}, {os.cpu_count()} cores")
    say(f"supernet commit {commit}, started {started}" + (f", thread caps {meta['thread_env']}" if meta["thread_env"] else ""))
    peak32 = matmul_peak("float32")
    say(f"fp32 matmul peak: {peak32:.0f} GFLOP/s (the fastest square matmul, sizes 512 to 4096)")
    try:
        peak16 = matmul_peak("bfloat16")
        say(f"bf16 matmul peak: {peak16:.0f} GFLOP/s")
    except Exception as error:  # noqa: BLE001 - report, do not fail, when bf16 is unsupported
        peak16 = None
        say(f"bf16 matmul: unavailable ({type(error).__name__})")

    peer_samples, peer_rounds = (6_000, 2) if quick else (27_000, 5)
    peer_ds, peer_source = _benchmark_data(peer_samples, full_test=True)
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
        say(
            f"  fused with keras.optimizers.Adam instead of FusedAdam: {result['fused_keras_adam_s']:.1f}s "
            f"({result['sequential_s'] / result['fused_keras_adam_s']:.2f}x the 6 fits); CPU time FusedAdam "
            f"{result['fused_cpu_s']:.1f}s vs keras Adam {result['fused_keras_adam_cpu_s']:.1f}s"
        )
        rows.append([
            f"fused training, keras.optimizers.Adam (as the baseline), batch {batch_size}",
            f"{result['sequential_s']:.1f} s (6 fits)",
            f"{result['fused_keras_adam_s']:.1f} s",
            f"{result['sequential_s'] / result['fused_keras_adam_s']:.2f}x",
            "report",
        ])
        rows.append([
            f"FusedAdam vs keras.optimizers.Adam, fused training, batch {batch_size} (wall; CPU)",
            f"{result['fused_keras_adam_s']:.1f} s; {result['fused_keras_adam_cpu_s']:.1f} s CPU (keras Adam)",
            f"{result['fused_s']:.1f} s; {result['fused_cpu_s']:.1f} s CPU",
            f"{result['fused_keras_adam_s'] / result['fused_s']:.2f}x; "
            f"{result['fused_keras_adam_cpu_s'] / result['fused_cpu_s']:.2f}x CPU",
            "keep the default only if faster",
        ])
        steps = result["steps_per_execution"]
        say(
            f"  fused with steps_per_execution={steps}: {result['fused_steps_s']:.1f}s "
            f"({result['fused_s'] / result['fused_steps_s']:.2f}x the default); CPU {result['fused_steps_cpu_s']:.1f}s "
            f"vs {result['fused_cpu_s']:.1f}s"
        )
        rows.append([
            f"fused training, steps_per_execution={steps}, batch {batch_size} (wall; CPU)",
            f"{result['fused_s']:.1f} s; {result['fused_cpu_s']:.1f} s CPU (default, 1 step per call)",
            f"{result['fused_steps_s']:.1f} s; {result['fused_steps_cpu_s']:.1f} s CPU",
            f"{result['fused_s'] / result['fused_steps_s']:.2f}x; {result['fused_cpu_s'] / result['fused_steps_cpu_s']:.2f}x CPU",
            "keep as advice only if faster",
        ])
        for key, lever in (("fused_bytes", 'dropout_masks="bytes"'),
                           ("fused_bytes_steps", f'dropout_masks="bytes" and steps_per_execution={steps}')):
            wall, cpu = result[f"{key}_s"], result[f"{key}_cpu_s"]
            say(
                f"  fused with {lever}: {wall:.1f}s ({result['fused_s'] / wall:.2f}x the default); "
                f"CPU {cpu:.1f}s vs {result['fused_cpu_s']:.1f}s"
            )
            rows.append([
                f"fused training, {lever}, batch {batch_size} (wall; CPU)",
                f"{result['fused_s']:.1f} s; {result['fused_cpu_s']:.1f} s CPU (default: float masks, 1 step per call)",
                f"{wall:.1f} s; {cpu:.1f} s CPU",
                f"{result['fused_s'] / wall:.2f}x; {result['fused_cpu_s'] / cpu:.2f}x CPU",
                "keep as an option only if faster",
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
        ceiling = matmul_ceiling(6, [784, *hidden, 10], batch_size)
        say(
            f"  the step's matmuls alone at these shapes: {ceiling:.0f} GFLOP/s ({100 * ceiling / peak32:.0f}% of peak); "
            f"the fused step runs at {100 * result['fused_gflops'] / ceiling:.0f}% of that"
        )
        rows.append([
            f"bottleneck: the step's matmuls alone (K=6 batched, these shapes), batch {batch_size}",
            f"fp32 peak {peak32:.0f}",
            f"{ceiling:.0f} GFLOP/s ({100 * ceiling / peak32:.0f}% of peak)",
            f"fused step at {100 * result['fused_gflops'] / ceiling:.0f}% of it",
            "explains the gap to the goals",
        ])
        # Were the fused step nothing but its matmuls at their ceiling, the
        # speedup over the 6 fits could be no higher than this.
        matmul_only_s = result["fused_s"] * result["fused_gflops"] / ceiling
        bound = result["sequential_s"] / matmul_only_s
        say(f"  the fused training's FLOPs at that ceiling take {matmul_only_s:.1f}s: at most {bound:.2f}x the 6 fits")
        rows.append([
            f"bound: 6 fits vs the fused training's matmuls alone at their ceiling, batch {batch_size}",
            f"{result['sequential_s']:.1f} s (6 fits)",
            f"{matmul_only_s:.1f} s",
            f"at most {bound:.2f}x",
            "explains the gap to the goals",
        ])
        samples = min(num_samples, 12_000)
        breakdown = bench_step_breakdown(6, hidden, 784, 10, samples, batch_size)
        if breakdown is not None:
            names = {
                "matmuls": "matmuls",
                "other_forward_backward": "bias, activations, loss and their gradients",
                "dropout": "dropout",
                "adam": "Adam update",
                "fit_loop": "fit's input pipeline and loop",
            }
            shares = ", ".join(f"{label} {100 * breakdown['shares'][key]:.0f}%" for key, label in names.items())
            say(f"  where a fit step's {1e3 * breakdown['step_s']:.1f} ms go (each part timed alone, best of 3 alternating rounds): {shares}")
            rows.append([
                f"bottleneck: where the fused step's time goes, batch {batch_size}",
                f"{1e3 * breakdown['step_s']:.1f} ms per fit step",
                shares,
                "—",
                "explains the gap to the goals",
            ])
        say(
            f"peers: 6 x {'-'.join(map(str, hidden))}-10 on {len(peer_ds.x_train)} images of {peer_source}, batch "
            f"{batch_size}, {peer_rounds} interleaved rounds of one epoch each after the same warm-up; softmax-vote "
            f"accuracy on {len(peer_ds.x_test)} test images ..."
        )
        peer_lines, peer_rows = peer_report(bench_peers(peer_ds, 6, hidden, batch_size, rounds=peer_rounds), 6, batch_size)
        for line in peer_lines:
            say(line)
        rows += peer_rows

    for backend in backends:
        if backend == keras.backend.backend():
            continue
        say(f"peers under the {backend} backend, in a subprocess: the same contenders, data and rounds, batch "
            f"{' and '.join(map(str, batch_sizes))} ...")
        outcome = bench_peers_backend(backend, batch_sizes, hidden=hidden, num_samples=peer_samples, rounds=peer_rounds)
        if "skipped" in outcome:
            say(f"  skipped: {outcome['skipped']}")
            rows.append([f"peers ({backend} backend)", "—", f"skipped: {outcome['skipped']}", "—", "report"])
            continue
        for batch_size in batch_sizes:
            say(f"  batch {batch_size}:")
            peer_lines, peer_rows = peer_report(outcome["results"][str(batch_size)], 6, batch_size, backend=backend)
            for line in peer_lines:
                say(line)
            rows += peer_rows

    last = results[batch_sizes[0]]
    inference = bench_inference(last["fused"], last["members"], last["x"])

    def speedup(key):
        low, high = inference[f"speedup_range_{key}"]
        return f"{inference[f'speedup_{key}']:.2f}x (rounds {low:.2f}-{high:.2f}x)"

    say(
        f"inference ({inference['rounds']} interleaved rounds; best throughput, median ratio): 6 predicts + mean "
        f"{inference['separate_per_s']:.0f}/s, SuperNet {inference['supernet_per_s']:.0f}/s ({speedup('supernet')}), "
        f"fused SuperNet {inference['fused_supernet_per_s']:.0f}/s ({speedup('fused_supernet')})"
    )
    for label, key in (("SuperNet inference (samples/s)", "supernet"), ("fused SuperNet inference (samples/s)", "fused_supernet")):
        rows.append([label, f"{inference['separate_per_s']:.0f} (6 predicts + mean)", f"{inference[f'{key}_per_s']:.0f}", speedup(key), ">= 2x"])
    separate_share, fused_share = (100 * inference[k] / peak32 for k in ("separate_gflops", "fused_supernet_gflops"))
    say(
        f"  inference GFLOP/s: 6 predicts {inference['separate_gflops']:.0f} ({separate_share:.0f}% of peak), fused "
        f"SuperNet {inference['fused_supernet_gflops']:.0f} ({fused_share:.0f}%)"
    )
    rows.append([
        "bottleneck: inference GFLOP/s (same arithmetic on both sides)",
        f"{inference['separate_gflops']:.0f} ({separate_share:.0f}% of peak)",
        f"{inference['fused_supernet_gflops']:.0f} ({fused_share:.0f}% of peak)",
        f"{inference['fused_supernet_gflops'] / inference['separate_gflops']:.2f}x (best rounds)",
        f"2x needs the 6 predicts below {fused_share / 2:.0f}% of peak",
    ])

    precision_samples = 12_000 if quick else 30_000
    ds, source = _benchmark_data(precision_samples)
    say(f"precision: fused training on {len(ds.x_train)} samples of {source}, 2 epochs, batch 512, fp32 vs mixed_bfloat16 ...")
    fp32 = bench_precision("float32", ds)
    bf16 = bench_precision("mixed_bfloat16", ds)
    say(
        f"  float32 {fp32['seconds']:.1f}s, test acc {100 * fp32['accuracy']:.2f}%; mixed_bfloat16 "
        f"{bf16['seconds']:.1f}s, test acc {100 * bf16['accuracy']:.2f}%"
    )
    rows.append([
        f"fused training, mixed_bfloat16 ({source})",
        f"{fp32['seconds']:.1f} s, acc {100 * fp32['accuracy']:.2f}% (float32)",
        f"{bf16['seconds']:.1f} s, acc {100 * bf16['accuracy']:.2f}%",
        f"{fp32['seconds'] / bf16['seconds']:.2f}x",
        "option if accuracy holds",
    ])

    tta_rows, tta_notes = time_to_accuracy_rows(results_dir)
    if not tta_rows:
        tta_notes = [f"Time to accuracy: no recorded runs in {Path(out_dir) / 'results'}; record them with "
                     f"`supernet run {TIME_TO_ACCURACY} --preset cpu_long --seeds 0-2`."]
    for row in tta_rows:
        say(f"{row[0]}: single {row[1]}, SuperModel {row[2]}, ratio {row[3]}, {row[4]}")
    rows += tta_rows

    backend_notes = []
    if backends:
        mlp_samples, cnn_images = (2000, 500) if quick else (6000, 2000)
        spec_text = f"6 x {'-'.join(map(str, hidden))}-10, {mlp_samples} samples, batch 256"
        backend_results = []
        for backend in backends:
            say(f"backend {backend}: fused MLP epoch ({spec_text}) and thesis CNN epoch ({cnn_images} images), in a subprocess ...")
            result = bench_backend(backend, mlp_samples=mlp_samples, cnn_images=cnn_images)
            backend_results.append(result)
            if "skipped" in result:
                say(f"  {backend} skipped: {result['skipped']}")
                backend_notes.append(f"{backend} skipped: {result['skipped']}.")
                continue
            say(
                f"  fused MLP epoch {result['mlp_epoch_s']:.1f}s ({result['mlp_gflops']:.0f} GFLOP/s, first fit "
                f"{result['mlp_trace_s']:.1f}s); thesis CNN epoch {result['cnn_epoch_s']:.1f}s on {result['cnn_data']} "
                f"(first fit {result['cnn_trace_s']:.1f}s)"
            )
            if "cnn_data_note" in result:
                say(f"  note: {result['cnn_data_note']}; used synthetic data instead")
                note = f"{result['cnn_data_note']}: thesis CNN timed on synthetic 32x32x3 images instead."
                backend_notes += [note] if note not in backend_notes else []
        cnn_data = next((r["cnn_data"] for r in backend_results if "cnn_data" in r), f"{cnn_images} images")
        rows += _backend_rows(backend_results, spec_text, f"{cnn_data}, batch 128")

    table = reports.Table(
        title="Benchmarks: fused ensembles vs the plain alternatives",
        columns=["what", "baseline", "supernet", "ratio", "goal"],
        rows=rows,
        caption=(
            f"Measured in one run of `supernet bench{' --quick' if quick else ''}` (commit {commit}, started "
            f"{started}): backend "
            f"{keras.backend.backend()}, keras {keras.__version__}, CPU {_cpu_model()}, "
            f"{os.cpu_count()} cores; fp32 matmul peak {peak32:.0f} GFLOP/s"
            + (f", bf16 {peak16:.0f} GFLOP/s" if peak16 else "")
            + f". Training: {num_samples} samples of 784 features, {epochs} epoch(s), dropout 0.2; Adam: the 6 "
            "sequential fits use keras.optimizers.Adam, the fused model the library default "
            "(`compile(optimizer=\"adam\")` = supernet.optimizers.FusedAdam, the same update in one TensorFlow "
            "kernel per variable) unless its row says keras.optimizers.Adam."
            + f" Peer rows: {len(peer_ds.x_train)} images of {peer_source}, dropout 0.2, Adam with Keras's defaults "
            "(keras.optimizers.Adam for the fits and the towers, the same update written out in JAX); each "
            f"contender trains the same warm-up batches, then one epoch in each of {peer_rounds} interleaved rounds; "
            "ratio = median over rounds of the 6 fits' epoch / the contender's; test accuracy = softmax vote of "
            f"the members on {len(peer_ds.x_test)} test images after all epochs. Peer rows naming a backend ran "
            "in a subprocess under that Keras backend, with the same data and protocol."
            + (" Backend rows: each backend in its own subprocess, one timed epoch after a warm-up "
               "fit on every batch shape (tracing/compilation time in the log), Keras defaults "
               "(no XLA on TensorFlow), Adam; ratio = TensorFlow time / JAX time." if backends else "")
        ),
        footnotes=tta_notes + backend_notes,
    )
    tables = [table]
    if scaling:
        member_counts, widths, scaling_samples, scaling_rounds = (
            ((1, 2), ((32, 64), (8, 16)), 1024, 1) if quick else (SCALING_MEMBERS, SCALING_WIDTHS, 12_000, 3)
        )
        say(f"scaling: K = {', '.join(map(str, member_counts))} members of {' and '.join('-'.join(map(str, w)) for w in widths)}, "
            f"{scaling_samples} samples, batch 128, {scaling_rounds} interleaved round(s); peak RSS of each training in its own subprocess ...")
        scaled = bench_scaling(member_counts, widths, num_samples=scaling_samples, rounds=scaling_rounds)
        for r in scaled:
            say(f"  {'-'.join(map(str, r['hidden']))} x {r['num_members']}: {r['num_members']} fits {r['sequential_s']:.2f} s, "
                f"fused {r['fused_s']:.2f} s ({r['speedup']:.2f}x)")
        for note in _payoff_notes(scaled):
            say("  " + note)
        tables.append(scaling_table(scaled, (
            f"Measured in the same run: {scaling_samples} random samples of 784 features, 10 classes, dropout 0.2, Adam "
            f"(the fused model's FusedAdam), batch 128; time per epoch = best of {scaling_rounds} interleaved round(s) "
            "after a warm-up fit; GFLOP/s = 6 FLOPs per weight per sample over that time. Peak RSS: each contender's "
            "warm-up and one epoch alone in a fresh subprocess; in brackets its growth over that process's peak "
            "before any model was built (the backend and the data)."
        )))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmarks.md"
    text = "\n".join(reports.to_markdown(t) for t in tables)
    path.write_text(text + "\n## Log\n\n```\n" + "\n".join(lines) + "\n```\n")
    print(f"wrote {path}")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="supernet bench")
    parser.add_argument("--quick", action="store_true", help="smaller data, one epoch")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--scaling", action="store_true", help="also the scaling table: K = 1 to 16 members, two widths")
    parser.add_argument("--backend-worker", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--rss-worker", metavar="JSON", help=argparse.SUPPRESS)
    parser.add_argument("--peers-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workers = ((args.backend_worker, _backend_worker), (args.rss_worker, _rss_worker), (args.peers_worker, _peers_worker))
    for spec, worker in workers:
        if spec:
            print("RESULT " + json.dumps(worker(json.loads(spec))), flush=True)
            return 0
    run(quick=args.quick, out_dir=args.out, scaling=args.scaling)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
