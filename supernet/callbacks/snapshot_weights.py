"""Copies of a model's weights after chosen epochs."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="supernet")
class SnapshotWeights(keras.callbacks.Callback):
    """Keeps a copy of the model's weights after the given 1-based epochs.

    At the end of epoch `e` (1-based, counted as `fit()` counts them, so a
    fit resumed with `initial_epoch` continues the count) the callback
    stores `model.get_weights()` when `e` is one of `epochs`. Snapshots
    survive later `fit()` calls on the same model (a later snapshot of the
    same epoch replaces the earlier one); a different model starts clean.
    Unlike `SnapshotEnsemble`, which follows a learning-rate schedule step by
    step, this takes the weights of ordinary training at epoch boundaries,
    e.g. to compare what becomes of the net at several points of one run.

    Args:
        epochs: 1-based epochs after which to copy the weights; may be
            empty (nothing is copied).

    Attributes:
        weights: `{epoch: list of numpy arrays}`, as `model.get_weights()`
            returned them at the end of that epoch.

    Example:
    >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> snapshots = SnapshotWeights([1, 3])
    >>> _ = model.fit(x, y, epochs=4, callbacks=[snapshots], verbose=0)
    >>> sorted(snapshots.weights)
    [1, 3]

    Reference:
        Bukowski & Dzwinel 2020, Figures 4 and 5 (snapshots of a normal
        training boosted layer by layer) and Table 12 (ensembles of the
        members at chosen epochs).
    """

    def __init__(self, epochs):
        super().__init__()
        try:
            values = list(epochs)
        except TypeError:
            values = None
        if values is None or not all(
            isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= 1 for e in values
        ):
            raise ValueError(
                "Argument `epochs` must be a sequence of 1-based epochs (ints >= 1). "
                f"Received: epochs={epochs!r}"
            )
        self.epochs = tuple(sorted({int(e) for e in values}))
        self.weights = {}
        self._trained_model = None

    def on_train_begin(self, logs=None):
        if self._trained_model is not self.model:
            self.weights = {}
        self._trained_model = self.model

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.weights[epoch + 1] = [np.array(w, copy=True) for w in self.model.get_weights()]

    def get_config(self):
        return {"epochs": list(self.epochs)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
