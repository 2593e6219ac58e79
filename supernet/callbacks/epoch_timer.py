"""Wall-clock and CPU time of every training epoch."""

import time

import keras


@keras.saving.register_keras_serializable(package="supernet")
class EpochTimer(keras.callbacks.Callback):
    """Records the wall and CPU seconds of every epoch, across `fit()` calls.

    Each epoch's time runs from `on_epoch_begin` to `on_epoch_end`, so it
    includes the validation pass of that epoch and the work of the callbacks
    listed before this one at the epoch's end. Times are appended across any
    number of `fit()` calls, as when one training runs in several stages
    (`retrain_layer_by_layer` passes the same callbacks to every stage); use
    a new timer for a new run.

    Attributes:
        seconds: list of floats, wall seconds, one per epoch run, in the
            order they ran.
        cpu_seconds: list of floats, the process's CPU seconds (all
            threads) over the same spans: the thesis's time axis, which
            does not depend on what else the machine runs.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> timer = EpochTimer()
    >>> for epochs in (2, 5):  # the second fit() resumes where the first ended
    ...     _ = model.fit(np.zeros((8, 4)), np.zeros(8), epochs=epochs,
    ...                   initial_epoch=len(timer.seconds), callbacks=[timer], verbose=0)
    >>> len(timer.seconds)
    5

    Reference:
        Bukowski & Dzwinel 2020, Figures 4 and 5 (cost of boosting snapshots
        layer by layer against training on).
    """

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.cpu_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
