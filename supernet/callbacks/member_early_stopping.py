"""Early stopping for each member of a fused ensemble separately."""

import keras
import numpy as np

from supernet import metrics
from supernet.layers.grouped_dense import GroupedDense


@keras.saving.register_keras_serializable(package="supernet")
class MemberEarlyStopping(keras.callbacks.Callback):
    """Stops each member of a fused `(batch, K, C)` ensemble on its own.

    The thesis trains each sub-network until its own validation loss stops
    improving (Table 4: patience 5 or 10 epochs). In a fused model all
    members step together, so this callback tracks every member's validation
    loss (or accuracy), keeps a copy of each member's best weights, stops
    `fit()` once every member has run out of patience, and writes each
    member's best weights back at the end. The result equals K separate
    trainings with `keras.callbacks.EarlyStopping(restore_best_weights=True)`.

    Args:
        validation_data: `(x_val, y_val)` used to score the members.
        monitor: `"loss"` (cross-entropy, minimised) or `"accuracy"`.
        patience: epochs without improvement before a member is done.
        min_delta: minimum change that counts as an improvement.
        restore_best_weights: write each member's best weights back at the end.
        batch_size: batch size of the validation `predict`.

    Attributes (after `fit`):
        best_epochs: list, 1-based epoch of each member's best score.
        stopped_epoch: 1-based epoch at which training stopped (0 if never).

    Example:
    >>> stop = MemberEarlyStopping((x_val, y_val), patience=5)  # doctest: +SKIP
    >>> model.fit(x, y, epochs=100, callbacks=[stop])  # doctest: +SKIP

    Reference:
        Bukowski & Dzwinel 2020, Table 4 (early stopping per sub-network).
    """

    def __init__(self, validation_data, monitor="loss", patience=5, min_delta=0.0, restore_best_weights=True, batch_size=1024):
        super().__init__()
        if monitor not in ("loss", "accuracy"):
            raise ValueError(f"Argument `monitor` must be 'loss' or 'accuracy'. Received: monitor={monitor!r}")
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise ValueError(
                "Argument `validation_data` must be a tuple (x_val, y_val). "
                f"Received: validation_data of type {type(validation_data).__name__}"
            )
        if patience < 0:
            raise ValueError(f"Argument `patience` must be >= 0. Received: patience={patience}")
        self.validation_data = validation_data
        self.monitor = monitor
        self.patience = patience
        self.min_delta = abs(min_delta)
        self.restore_best_weights = restore_best_weights
        self.batch_size = batch_size

    def _grouped_layers(self):
        return [layer for layer in self.model.layers if isinstance(layer, GroupedDense)]

    def on_train_begin(self, logs=None):
        layers = self._grouped_layers()
        if not layers or len(self.model.outputs[0].shape) != 3:
            raise ValueError(
                "MemberEarlyStopping needs a fused model with one softmax per member, "
                "output (batch, K, classes): a PartitionedMLP with head='members'."
            )
        self.num_members = layers[-1].num_members
        self.best = np.full(self.num_members, np.inf)
        self.best_epochs = [0] * self.num_members
        self.wait = np.zeros(self.num_members, int)
        self.done = np.zeros(self.num_members, bool)
        self.best_weights = [None] * self.num_members
        self.stopped_epoch = 0

    def _scores(self):
        x_val, y_val = self.validation_data
        probs = self.model.predict(x_val, batch_size=self.batch_size, verbose=0)
        per_member = []
        for k in range(self.num_members):
            if self.monitor == "loss":
                per_member.append(metrics.nll(y_val, probs[:, k]))
            else:
                per_member.append(-metrics.accuracy(y_val, probs[:, k]))
        return np.asarray(per_member)

    def on_epoch_end(self, epoch, logs=None):
        # Keras's EarlyStopping rule, per member: a member that has run out of
        # patience is done for good, although the fused model keeps stepping
        # it until every member is done; its best weights are restored.
        scores = self._scores()
        for k, score in enumerate(scores):
            if self.done[k]:
                continue
            self.wait[k] += 1
            if score < self.best[k] - self.min_delta:
                self.best[k] = score
                self.best_epochs[k] = epoch + 1
                self.wait[k] = 0
                if self.restore_best_weights:
                    self.best_weights[k] = [
                        [keras.ops.convert_to_numpy(w)[k].copy() for w in layer.weights]
                        for layer in self._grouped_layers()
                    ]
            elif self.wait[k] >= self.patience and epoch > 0:
                self.done[k] = True
        if logs is not None:
            logs[f"val_member_{self.monitor}_best"] = float(np.mean(np.abs(self.best)))
        if self.done.all():
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if not self.restore_best_weights:
            return
        for i, layer in enumerate(self._grouped_layers()):
            weights = [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
            for k, best in enumerate(self.best_weights):
                if best is None:
                    continue
                for w, b in zip(weights, best[i]):
                    w[k] = b
            layer.set_weights(weights)

    def get_config(self):
        # The validation arrays are data, not configuration: pass them again,
        # `MemberEarlyStopping.from_config({**config, "validation_data": (x, y)})`.
        return {
            "monitor": self.monitor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "restore_best_weights": self.restore_best_weights,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
