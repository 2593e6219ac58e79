"""Data-parallel training of one model over the local devices.

This is the one module of `supernet` that imports a backend (`tensorflow` or
`jax`) directly, always behind a `keras.backend.backend()` check: replicating
a model is not something `keras.ops` can express.
"""

import os

import keras

__all__ = ["data_parallel_strategy"]


def _tensorflow_strategy(num_devices):
    import tensorflow as tf

    physical = tf.config.list_physical_devices("CPU")
    if num_devices is None:
        num_devices = max(2, len(physical))
    if len(physical) < num_devices:
        try:
            # One physical CPU (TensorFlow's usual view of a CPU machine) is
            # split into `num_devices` logical CPUs that share its cores.
            tf.config.set_logical_device_configuration(
                physical[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
            )
        except RuntimeError as error:
            # Raised once TensorFlow has created its devices (after any op).
            configured = len(tf.config.list_logical_devices("CPU"))
            if configured < num_devices:
                raise RuntimeError(
                    f"TensorFlow already initialised {configured} CPU device(s); "
                    f"call `data_parallel_strategy(num_devices={num_devices})` "
                    "before running any TensorFlow op (e.g. at the top of the "
                    "script, before creating models or data)."
                ) from error
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:num_devices]
    return tf.distribute.MirroredStrategy(devices=devices)


def _jax_distribution(num_devices):
    import jax

    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if len(devices) < num_devices:
        raise RuntimeError(
            f"JAX sees {len(devices)} device(s), {num_devices} requested. On a "
            "CPU, set `XLA_FLAGS=--xla_force_host_platform_device_count="
            f"{num_devices}` in the environment before JAX is imported."
        )
    return keras.distribution.DataParallel(devices=devices[:num_devices])


def data_parallel_strategy(num_devices=None):
    """A data-parallel strategy over the local devices, for the active backend.

    Every device holds a full replica of the model; each global batch is split
    evenly across the replicas and their gradients are averaged, so one step
    sees the same global batch and mean loss as a single-device step (equal up
    to floating-point summation order).

    - TensorFlow: a `tf.distribute.MirroredStrategy` over local CPUs. TensorFlow
      sees one physical CPU; with fewer than `num_devices` physical CPUs it is
      split into `num_devices` logical CPUs with
      `tf.config.set_logical_device_configuration`. That works only before
      TensorFlow initialises its devices, so call this function before any
      TensorFlow op runs (first thing in the process: before building models,
      loading data into tensors or calling `keras.utils.set_random_seed`
      is fine, since it seeds without creating devices).
    - JAX: a `keras.distribution.DataParallel` over `jax.devices()`. On a CPU,
      JAX exposes several devices only if
      `XLA_FLAGS=--xla_force_host_platform_device_count=N` is set before JAX
      is imported.

    Both objects have `scope()`; build, compile and fit the model inside it.

    Logical CPU devices share the same cores, so on CPU this is a way to
    exercise (and test) multi-device code, not a speed-up; the same code
    uses real devices (GPUs) when they exist.

    Args:
        num_devices: int >= 1, or `None` for all local devices (TensorFlow on
            a single CPU: 2 logical devices).

    Returns:
        A `tf.distribute.MirroredStrategy` (TensorFlow) or a
        `keras.distribution.DataParallel` (JAX).

    Example:

    ```python
    from supernet.distribute import data_parallel_strategy

    strategy = data_parallel_strategy(2)  # before any TensorFlow op
    with strategy.scope():
        model = supernet.PartitionedMLP(64, [32], num_classes=10, num_members=4)
        model.compile(optimizer="adam")
        model.fit(x, y, batch_size=64, epochs=1)
    ```
    """
    if num_devices is not None and (isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1):
        raise ValueError(
            f"Argument `num_devices` must be an int >= 1 or None. Received: num_devices={num_devices}"
        )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_strategy(num_devices)
    if backend == "jax":
        return _jax_distribution(num_devices)
    raise ValueError(
        f"Data-parallel training supports the tensorflow and jax backends. "
        f"Received: backend={backend} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')})"
    )
