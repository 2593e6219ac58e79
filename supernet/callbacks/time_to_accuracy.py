"""Stop training when a target accuracy is reached, recording the time."""

import time

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="supernet")
class TimeToAccuracy(keras.callbacks.Callback):
    """Records the wall and CPU time at which a target accuracy is first reached.

    After every epoch the model is scored on `validation_data` with
    `score_fn(y, model.predict(x))` (default: accuracy of the argmax of the
    last axis, or of the mean over members for a fused `(batch, K, C)`
    output). When the score reaches `target`, training stops and
    `reached_epoch`, `wall_s` and `cpu_s` (since `on_train_begin`, plus any
    `offset` already spent, e.g. on a previous stage) are kept. The scoring
    pass itself is excluded from the times.

    Args:
        validation_data: `(x, y)` on which the target is measured.
        target: accuracy in [0, 1].
        score_fn: optional `fn(y, probs) -> float`.
        offset: `(wall_s, cpu_s)` already spent before this `fit()`.
        stop: stop training once the target is reached.

    Reference:
        Bukowski & Dzwinel 2020, Tables 10 and 11.
    """

    def __init__(self, validation_data, target, score_fn=None, offset=(0.0, 0.0), stop=True):
        super().__init__()
        if not 0 < target <= 1:
            raise ValueError(f"Argument `target` must be in (0, 1]. Received: target={target}")
        self.validation_data = validation_data
        self.target = target
        self.score_fn = score_fn
        self.offset = offset
        self.stop = stop

    def on_train_begin(self, logs=None):
        self.reached_epoch = None
        self.wall_s = self.cpu_s = None
        self.scores = []
        self._excluded = [0.0, 0.0]
        self._start = (time.perf_counter(), time.process_time())

    def _score(self):
        x, y = self.validation_data
        probs = self.model.predict(x, batch_size=1024, verbose=0)
        if self.score_fn is not None:
            return float(self.score_fn(y, probs))
        if probs.ndim == 3:
            probs = probs.mean(axis=1)
        return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(y).reshape(-1)))

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = time.perf_counter(), time.process_time()
        score = self._score()
        self.scores.append(score)
        if self.reached_epoch is None and score >= self.target:
            self.reached_epoch = epoch + 1
            self.wall_s = wall - self._start[0] - self._excluded[0] + self.offset[0]
            self.cpu_s = cpu - self._start[1] - self._excluded[1] + self.offset[1]
            if self.stop:
                self.model.stop_training = True
        self._excluded[0] += time.perf_counter() - wall
        self._excluded[1] += time.process_time() - cpu

    def get_config(self):
        # The validation arrays are data, not configuration: pass them again
        # to `from_config` as `validation_data`.
        return {"target": self.target, "offset": list(self.offset), "stop": self.stop}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
