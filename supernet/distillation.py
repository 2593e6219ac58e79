"""Knowledge distillation of an ensemble or SuperNet into one student network.

Response-based distillation (Hinton et al. 2015): the student is trained on
the teacher's class probabilities softened by a temperature `T` (soft
targets) plus the true labels (hard targets),

    loss = alpha * CE(y, q) + (1 - alpha) * T^2 * KL(p_T || q_T),

where `p_T = softmax(teacher_logits / T)`, `q_T = softmax(student_logits /
T)` and `q = q_1`. The `T^2` keeps the soft term's gradients on the same
scale as the hard term's when `T` changes (Hinton et al., section 2).

`distillation_loss` is the per-sample math; `Distiller` wraps a student and
a frozen teacher in a `keras.Model` whose `compute_loss` applies it, so
distillation is a plain `compile` + `fit`. With `teacher=None` it distils
offline: the teacher's outputs are computed once (`teacher_outputs`) and
passed with the labels, `fit(x, (y, teacher_outputs))`, which saves the
teacher's forward pass at every step of every epoch.
"""

import keras
import numpy as np
from keras import ops

__all__ = ["Distiller", "distillation_loss", "teacher_outputs"]


def _check_temperature_alpha(temperature, alpha):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ValueError(f"Argument `temperature` must be a number > 0. Received: temperature={temperature}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"Argument `alpha` must be a number in [0, 1]. Received: alpha={alpha}")


def _log_probs(pred, from_logits):
    """Log-probabilities `(batch, C)`; a `(batch, K, C)` ensemble is averaged first."""
    if len(ops.shape(pred)) == 3:
        probs = ops.softmax(pred, axis=-1) if from_logits else pred
        # An ensemble's prediction is its softmax vote (mean member probability).
        pred, from_logits = ops.mean(probs, axis=1), False
    if from_logits:
        return ops.log_softmax(pred, axis=-1)
    return ops.log(ops.clip(pred, keras.config.epsilon(), 1.0))


def distillation_loss(y_true, student_pred, teacher_pred, temperature=4.0, alpha=0.1, student_from_logits=False, teacher_from_logits=False):
    """Per-sample distillation loss: `alpha * CE + (1 - alpha) * T^2 * KL`.

    Args:
        y_true: `(batch,)` integer labels (hard targets).
        student_pred: `(batch, C)` student probabilities (or logits).
        teacher_pred: `(batch, C)` teacher probabilities (or logits), or
            `(batch, K, C)` member outputs of a fused ensemble, averaged into
            the softmax vote before softening.
        temperature: float > 0, `T`.
        alpha: float in `[0, 1]`, weight of the hard-label cross-entropy.
        student_from_logits, teacher_from_logits: whether the predictions
            are logits. Probabilities are turned into log-probabilities
            (clipped at `keras.config.epsilon()`), which soften exactly like
            logits: `softmax(log(p) / T)`.

    Returns:
        `(batch,)` tensor of losses.

    Example:
    >>> p = np.array([[0.5, 0.5]])
    >>> round(float(distillation_loss(np.array([0]), p, p, temperature=2.0, alpha=0.5)[0]), 4)  # 0.5 log 2
    0.3466

    Reference:
        Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
        Network", section 2.
    """
    _check_temperature_alpha(temperature, alpha)
    y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    student_log = _log_probs(ops.convert_to_tensor(student_pred, "float32"), student_from_logits)
    teacher_log = _log_probs(ops.convert_to_tensor(teacher_pred, "float32"), teacher_from_logits)
    hard = keras.losses.sparse_categorical_crossentropy(y_true, student_log, from_logits=True)
    soft_teacher = ops.log_softmax(teacher_log / temperature, axis=-1)
    soft_student = ops.log_softmax(student_log / temperature, axis=-1)
    kl = ops.sum(ops.exp(soft_teacher) * (soft_teacher - soft_student), axis=-1)
    return alpha * hard + (1.0 - alpha) * temperature**2 * kl


def teacher_outputs(teacher, x, batch_size=1024):
    """The teacher's predictions on `x`, for offline distillation.

    Args:
        teacher: a `keras.Model` (run in inference mode).
        x: inputs, e.g. the training set.
        batch_size: int, prediction batch size.

    Returns:
        A float32 NumPy array, `(n, C)` or `(n, K, C)`, to pass as the
        second part of `y` to a `Distiller(student, teacher=None)`.
    """
    if not isinstance(teacher, keras.Model):
        raise ValueError(f"Argument `teacher` must be a keras.Model. Received: teacher={teacher!r}")
    return np.asarray(teacher.predict(x, batch_size=batch_size, verbose=0), dtype="float32")


@keras.saving.register_keras_serializable(package="supernet")
class Distiller(keras.Model):
    """A student trained to match a frozen teacher's softened predictions.

    Calling the distiller calls the student; `fit` trains the student with
    `distillation_loss` on the teacher's outputs for the same batch. The
    teacher is any Keras model giving probabilities or logits of the same
    classes: a single net, a SuperNet, or a fused ensemble with
    `(batch, K, C)` outputs (averaged into its softmax vote). It is frozen
    (`trainable = False`) and called in inference mode, so its weights never
    change. After `fit`, use `distiller.student` on its own: it has the
    student's size and inference cost.

    Metrics passed to `compile` see the student's predictions, so
    `metrics=["accuracy"]` is the student's accuracy. The student's own
    regularisation losses are added to the distillation loss.

    Offline distillation: with `teacher=None`, `y` must be a pair
    `(labels, teacher_pred)` for training and evaluation alike, with
    `teacher_pred` from `teacher_outputs(teacher, x)`. For a deterministic
    teacher (inference mode, no augmentation of `x`) this is the same loss
    as the online form at the cost of one teacher pass over the data in
    total instead of one per epoch.

    Args:
        student: a `keras.Model` giving `(batch, C)` probabilities (or logits,
            with `student_from_logits=True`).
        teacher: a `keras.Model` giving `(batch, C)` or `(batch, K, C)`
            probabilities (or logits, with `teacher_from_logits=True`), or
            None for offline distillation (see above).
        temperature: float > 0, softening temperature `T` (Hinton et al.
            use 1-20; 2-5 is common for small nets).
        alpha: float in `[0, 1]`, weight of the hard-label cross-entropy;
            `1 - alpha` weighs the `T^2`-scaled soft term.
        student_from_logits, teacher_from_logits: output kinds, see above.

    Returns:
        A `keras.Model`; `distiller(x)` is `student(x)`.

    Example:
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    >>> distiller.compile(optimizer="adam", metrics=["accuracy"])
    >>> _ = distiller.fit(np.zeros((8, 4)), np.zeros(8), epochs=1, verbose=0)

    Reference:
        Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
        Network"; the Keras example "Knowledge Distillation" (Betge-Brezetz
        2020); thesis section 5 (future work: "our NN ensemble can be
        compressed substantially").
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.1, student_from_logits=False, teacher_from_logits=False, **kwargs):
        super().__init__(**kwargs)
        _check_temperature_alpha(temperature, alpha)
        for name, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model) and not (name == "teacher" and model is None):
                raise ValueError(f"Argument `{name}` must be a keras.Model. Received: {name}={model!r}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.student_from_logits = bool(student_from_logits)
        self.teacher_from_logits = bool(teacher_from_logits)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        if self.teacher is None:
            y, teacher_pred = self._offline_targets(y)
        else:
            teacher_pred = self.teacher(x, training=False)
        losses = distillation_loss(
            y,
            y_pred,
            ops.stop_gradient(teacher_pred),
            temperature=self.temperature,
            alpha=self.alpha,
            student_from_logits=self.student_from_logits,
            teacher_from_logits=self.teacher_from_logits,
        )
        if sample_weight is not None:
            losses = losses * ops.cast(ops.reshape(sample_weight, (-1,)), losses.dtype)
        loss = ops.mean(losses)
        if self.student.losses:
            loss = loss + ops.sum(ops.stack([ops.cast(l, loss.dtype) for l in self.student.losses]))
        return loss

    def _offline_targets(self, y):
        if not isinstance(y, (tuple, list)) or len(y) != 2:
            raise ValueError(
                "A Distiller with `teacher=None` needs `y=(labels, teacher_outputs)`, with the teacher's outputs from "
                f"`teacher_outputs(teacher, x)`. Received: y of type {type(y).__name__}"
            )
        return y[0], y[1]

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if self.teacher is None:
            y = self._offline_targets(y)[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": None if self.teacher is None else keras.saving.serialize_keras_object(self.teacher),
                "temperature": self.temperature,
                "alpha": self.alpha,
                "student_from_logits": self.student_from_logits,
                "teacher_from_logits": self.teacher_from_logits,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        if config["teacher"] is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
