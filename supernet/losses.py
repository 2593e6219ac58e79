"""Keras losses for fused ensembles, margin ("gap") and logit-normalised training.

Every loss here accepts `y_pred` of shape `(batch, num_classes)` for one model
or `(batch, K, num_classes)` for a fused ensemble (e.g. a `PartitionedMLP`);
with a member axis the members' losses are summed, so each member gets the
gradient of its own loss (see `MemberwiseCrossentropy`), and a
`(batch, K)` `sample_weight` weights each member's samples separately
(bootstrap counts from `supernet.bootstrap.bootstrap_weights`).
"""

import keras
from keras import ops


class _MemberLoss(keras.losses.Loss):
    """Base: per-member losses `(batch, K)` (or `(batch,)`), summed over members.

    Subclasses implement `member_losses(y_true, y_pred)`, which returns one
    loss per sample and member. A rank-2 `sample_weight` of shape
    `(batch, K)` multiplies each member's losses before the sum over
    members; a rank-1 one weights whole samples as usual in Keras.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None and len(ops.shape(sample_weight)) == 2 and len(ops.shape(y_pred)) == 3:
            # Per-member weights must meet the losses before the sum over
            # members; Keras's own weighting only sees the summed loss.
            self._member_weights = sample_weight
            try:
                return super().__call__(y_true, y_pred)
            finally:
                self._member_weights = None
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if len(ops.shape(y_pred)) == 2:
            return self.member_losses(y_true, y_pred)
        num_members = ops.shape(y_pred)[1]
        labels = ops.repeat(ops.expand_dims(y_true, 1), num_members, axis=1)
        per_member = self.member_losses(labels, y_pred)
        weights = getattr(self, "_member_weights", None)
        if weights is not None:
            per_member = per_member * ops.cast(weights, per_member.dtype)
        return ops.sum(per_member, axis=1)

    def member_losses(self, y_true, y_pred):
        """Per-sample losses of `(batch, C)` or `(batch, K, C)` predictions.

        The one method a subclass defines (cross-entropy, margin, LogitNorm);
        this base class only adds the per-member weighting and the sum over
        members.
        """
        raise NotImplementedError(f"{type(self).__name__} must define `member_losses(y_true, y_pred)`.")


def _logits(y_pred, from_logits):
    """Logits, or log-probabilities standing in for them (softmax is shift-invariant)."""
    if from_logits:
        return y_pred
    epsilon = keras.config.epsilon()
    return ops.log(ops.clip(y_pred, epsilon, 1.0))


@keras.saving.register_keras_serializable(package="supernet")
class MemberwiseCrossentropy(_MemberLoss):
    """Sum over members of each member's sparse categorical cross-entropy.

    For a fused ensemble whose output is `(batch, K, num_classes)` member
    probabilities, the loss of a sample is `sum_k -log p_k[y]`. The members
    share no weights, so the gradient of this sum with respect to member k's
    weights is the gradient of member k's own loss: K independent trainings on
    the same batches, in one model. A `sample_weight` of shape `(batch, K)`
    weights member k's loss on each sample by column k: with bootstrap
    counts (`supernet.bootstrap.bootstrap_weights`) each member trains on its
    own resample of the data, still in one fused model.

    Args:
        from_logits: whether `y_pred` holds logits instead of probabilities.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Example:
    >>> loss = MemberwiseCrossentropy()
    >>> y_pred = np.full((2, 3, 4), 0.25)
    >>> round(float(loss(np.array([0, 1]), y_pred)), 4)  # 3 * log(4)
    4.1589

    Reference:
        Bukowski & Dzwinel 2020, section 3.2.
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="memberwise_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits

    def member_losses(self, y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="supernet")
class MarginCrossentropy(_MemberLoss):
    """Cross-entropy with a margin ("gap") subtracted from the true-class logit.

    For logits `l`, true class `y` and margin `m`, the loss is
    `CE(l - m * e_y, y)`: the true class must beat every other class by more
    than `m` in logit space before the loss becomes small, which pushes the
    logit gap `l_y - max_{i != y} l_i` (`supernet.metrics.logit_margin`)
    up. `margin=0` is plain cross-entropy.

    Cross-entropy on logits is invariant to adding a constant to all
    logits, so with `from_logits=False` (probabilities, e.g. a softmax
    output) the log-probabilities stand in for the logits and the loss is
    the same function of the network (up to clipping probabilities at
    `keras.config.epsilon()`).

    Args:
        margin: float >= 0, the gap `m` subtracted from the true-class logit.
        from_logits: whether `y_pred` holds logits instead of probabilities.
        reduction, name, dtype: as for `keras.losses.Loss`.

    Returns:
        The mean over the batch of `CE(l - m e_y, y)`, summed over members
        when `y_pred` is `(batch, K, num_classes)`.

    Example:
    >>> loss = MarginCrossentropy(margin=1.0, from_logits=True)
    >>> round(float(loss(np.array([0]), np.array([[0.0, 0.0]]))), 4)  # log(1 + e)
    1.3133

    Reference:
        Shokorov 2021, "Bootstrapping neural-network ensembles" (MIPT),
        slide "training with a gap": `L_m = L(l - m e_y, y)`.
    """

    def __init__(self, margin=1.0, from_logits=False, reduction="sum_over_batch_size", name="margin_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin < 0:
            raise ValueError(f"Argument `margin` must be a number >= 0. Received: margin={margin}")
        self.margin = float(margin)
        self.from_logits = from_logits

    def member_losses(self, y_true, y_pred):
        logits = _logits(y_pred, self.from_logits)
        one_hot = ops.one_hot(y_true, ops.shape(logits)[-1], dtype=logits.dtype)
        return keras.losses.sparse_categorical_crossentropy(y_true, logits - self.margin * one_hot, from_logits=True)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="supernet")
class LogitNormCrossentropy(_MemberLoss):
    """Cross-entropy on logits divided by their L2 norm and a temperature.

    The loss is `CE(l / (tau * ||l||), y)` (LogitNorm): the network can no
    longer lower the loss by scaling its logits up (the "radial" direction),
    only by separating the classes' directions, which the source argues
    forces more useful features and larger normalised margins.

    Unlike `MarginCrossentropy` this is not invariant to shifting the
    logits, so it is meant for logits (`from_logits=True`, the default).
    With `from_logits=False` the probabilities' centred log-probabilities
    `log p - mean(log p)` (= the logits centred to mean 0; probabilities
    clipped at `keras.config.epsilon()`) are normalised instead: the only
    logits a softmax output determines. That is LogitNorm restricted to
    zero-mean logits, a variant; use a logits output for the original.

    Args:
        temperature: float > 0, `tau`; small values sharpen the normalised
            logits (the LogitNorm paper uses 0.01-0.05 on CIFAR).
        from_logits: whether `y_pred` holds logits (see above).
        reduction, name, dtype: as for `keras.losses.Loss`.

    Returns:
        The mean over the batch of `CE(l / (tau ||l||), y)`, summed over
        members when `y_pred` is `(batch, K, num_classes)`.

    Example:
    >>> loss = LogitNormCrossentropy(temperature=1.0, from_logits=True)
    >>> round(float(loss(np.array([0]), np.array([[3.0, 4.0]]))), 4)  # CE([0.6, 0.8], 0)
    0.7981

    Reference:
        Wei et al. 2022, "Mitigating Neural Network Overconfidence with Logit
        Normalization", ICML (eq. 5); Shokorov 2021 (MIPT), slide "adding a
        normalisation of the logits".
    """

    def __init__(self, temperature=0.05, from_logits=True, reduction="sum_over_batch_size", name="logit_norm_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
            raise ValueError(f"Argument `temperature` must be a number > 0. Received: temperature={temperature}")
        self.temperature = float(temperature)
        self.from_logits = from_logits

    def member_losses(self, y_true, y_pred):
        logits = _logits(y_pred, self.from_logits)
        if not self.from_logits:
            logits = logits - ops.mean(logits, axis=-1, keepdims=True)
        norms = ops.sqrt(ops.sum(ops.square(logits), axis=-1, keepdims=True)) + keras.config.epsilon()
        return keras.losses.sparse_categorical_crossentropy(y_true, logits / (self.temperature * norms), from_logits=True)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "from_logits": self.from_logits})
        return config
