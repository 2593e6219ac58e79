"""Keras losses for fused ensembles."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="supernet")
class MemberwiseCrossentropy(keras.losses.Loss):
    """Sum over members of each member's sparse categorical cross-entropy.

    For a fused ensemble whose output is `(batch, K, num_classes)` member
    probabilities, the loss of a sample is `sum_k -log p_k[y]`. The members
    share no weights, so the gradient of this sum with respect to member k's
    weights is the gradient of member k's own loss: K independent trainings on
    the same batches, in one model.

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

    def call(self, y_true, y_pred):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        num_members = ops.shape(y_pred)[1]
        labels = ops.repeat(ops.expand_dims(y_true, 1), num_members, axis=1)
        per_member = keras.losses.sparse_categorical_crossentropy(
            labels, y_pred, from_logits=self.from_logits
        )
        return ops.sum(per_member, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits})
        return config
