"""Accuracy and NLL on fixed splits after every epoch."""

import keras

from supernet import metrics


@keras.saving.register_keras_serializable(package="supernet")
class EpochScores(keras.callbacks.Callback):
    """Scores the model on fixed splits after every epoch: accuracy and NLL.

    Keras's `val_loss` includes the regularization losses (an L2 penalty on
    the head, say), so it is not the validation cross-entropy; this callback
    records the plain `supernet.metrics.accuracy` and `supernet.metrics.nll`
    of the model's probabilities on each split, one value per epoch. The
    model runs in inference mode (`training=False`) on a whole split at
    once, so splits should be small enough for one call (e.g. features
    computed once for a head). The curves restart at every `fit()`.

    Args:
        splits: `{name: (x, y)}` with integer labels `y`, e.g.
            `{"val": (x_val, y_val)}`. The model must output class
            probabilities of shape `(batch, classes)`.

    Attributes:
        curves: `{f"{name}_accuracy": [...], f"{name}_nll": [...]}` for
            every split, one float per epoch of the last `fit()`.

    Example:
    >>> x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> scores = EpochScores({"val": (x[32:], y[32:])})
    >>> _ = model.fit(x[:32], y[:32], epochs=3, callbacks=[scores], verbose=0)
    >>> sorted(scores.curves), len(scores.curves["val_nll"])
    (['val_accuracy', 'val_nll'], 3)

    Reference:
        Bukowski & Dzwinel 2020, Table 6 and Figure 10 (the SuperNet head's
        validation accuracy and loss epoch by epoch).
    """

    def __init__(self, splits):
        super().__init__()
        if not isinstance(splits, dict) or not splits:
            raise ValueError(
                "Argument `splits` must be a non-empty dict {name: (x, y)}. "
                f"Received: splits of type {type(splits).__name__}"
            )
        for name, split in splits.items():
            if not (isinstance(split, (tuple, list)) and len(split) == 2):
                raise ValueError(
                    f"Argument `splits` must map each name to a pair (x, y). Received: splits[{name!r}] "
                    f"of type {type(split).__name__}"
                )
            if len(split[0]) != len(split[1]):
                raise ValueError(
                    f"Argument `splits` must hold one label per sample. Received: splits[{name!r}] "
                    f"with len(x)={len(split[0])}, len(y)={len(split[1])}"
                )
        self.splits = dict(splits)
        self.curves = {}

    def on_train_begin(self, logs=None):
        self.curves = {f"{name}_{m}": [] for name in self.splits for m in ("accuracy", "nll")}

    def on_epoch_end(self, epoch, logs=None):
        for name, (x, y) in self.splits.items():
            probs = keras.ops.convert_to_numpy(self.model(x, training=False)).astype("float64")
            self.curves[f"{name}_accuracy"].append(metrics.accuracy(y, probs))
            self.curves[f"{name}_nll"].append(metrics.nll(y, probs))

    def get_config(self):
        # The splits are data, not configuration: pass them again to
        # `from_config` as `splits`.
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
