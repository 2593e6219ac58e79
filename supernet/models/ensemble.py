"""K trained classifiers voting as one Keras model, with no head to train."""

import keras
from keras import ops

from supernet._validation import check_bool, check_finite_weights
from supernet.layers.frozen_model import FrozenModel

COMBINERS = ("softmax", "log_prob", "majority")


def combine_member_probs(member_probs, combiner="softmax", eps=1e-12):
    """Combines `(batch, K, num_classes)` member probabilities, in `keras.ops`.

    The tensor counterpart of `supernet.metrics.softmax_vote`,
    `log_prob_average` and `majority_vote` (same math and tie rules), so it
    runs inside a model on any backend.

    Args:
        member_probs: tensor of shape `(batch, num_members, num_classes)`.
        combiner: `"softmax"` (mean probability), `"log_prob"`
            (`softmax(mean_k log max(p_k, eps))`, rows renormalised to sum
            to 1) or `"majority"` (plurality of the members' arg-max labels;
            among tied classes the highest summed probability wins, then the
            lowest index).
        eps: lower clip of the probabilities before the log (`"log_prob"`).

    Returns:
        Tensor of shape `(batch, num_classes)`. For `"majority"` it is the
        one-hot vector of the winning class, so its arg-max is
        `metrics.majority_vote` of the members.

    Example:
    >>> probs = np.array([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0]]], "float32")
    >>> keras.ops.convert_to_numpy(combine_member_probs(probs, "majority")).tolist()
    [[1.0, 0.0]]
    """
    if combiner not in COMBINERS:
        raise ValueError(f"Argument `combiner` must be one of {COMBINERS}. Received: combiner={combiner!r}")
    if combiner == "softmax":
        return ops.mean(member_probs, axis=1)
    if combiner == "log_prob":
        mean_log = ops.mean(ops.log(ops.maximum(member_probs, eps)), axis=1)
        return ops.exp(mean_log - ops.logsumexp(mean_log, axis=-1, keepdims=True))
    num_classes = member_probs.shape[-1]
    labels = ops.argmax(member_probs, axis=-1)
    votes = ops.sum(ops.one_hot(labels, num_classes, dtype=member_probs.dtype), axis=1)
    tied = ops.equal(votes, ops.max(votes, axis=-1, keepdims=True))
    summed = ops.sum(member_probs, axis=1)
    # Summed probabilities are >= 0, so -1 never beats a tied class.
    winner = ops.argmax(ops.where(tied, summed, -1.0), axis=-1)
    return ops.one_hot(winner, num_classes, dtype=member_probs.dtype)


def _copy_model(model, name):
    """An uncompiled copy of `model` with its weights, renamed: snapshots of one net share a name."""
    config = keras.saving.serialize_keras_object(model)
    config["config"] = {**config["config"], "name": name}
    # A member's optimizer state is no part of the ensemble.
    config.pop("compile_config", None)
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    return clone


def _validate_members(members):
    """The member list, with every member's input shape and output layout checked."""
    if isinstance(members, keras.Model):
        members = [members]  # one fused PartitionedMLP holds all K members
    if not isinstance(members, (list, tuple)) or len(members) == 0:
        raise ValueError(f"Argument `members` must be a non-empty list of Keras models. Received: members={members!r}")
    for k, member in enumerate(members):
        if not isinstance(member, keras.Model):
            raise ValueError(
                f"Argument `members` must hold only keras.Model instances. Received: members[{k}] of type {type(member).__name__}"
            )
        if not member.built or not member.inputs:
            raise ValueError(
                f"Argument `members` must hold built models with a known input (start them with keras.Input). "
                f"Received: members[{k}] ({member.name!r}) without inputs"
            )
        if len(member.inputs) != 1 or len(member.outputs) != 1:
            raise ValueError(
                f"Argument `members` must hold models with one input and one output. Received: members[{k}] "
                f"({member.name!r}) with {len(member.inputs)} inputs and {len(member.outputs)} outputs"
            )
        if len(member.outputs[0].shape) not in (2, 3):
            raise ValueError(
                "Argument `members` must hold classifiers with a (batch, num_classes) output, or fused ones with "
                f"a (batch, num_members, num_classes) output. Received: members[{k}] ({member.name!r}) with "
                f"output shape {tuple(member.outputs[0].shape)}"
            )
    shapes = [tuple(m.inputs[0].shape[1:]) for m in members]
    if len(set(shapes)) > 1:
        raise ValueError(f"Argument `members` must all have the same input shape. Received: members with input shapes {shapes}")
    classes = [m.outputs[0].shape[-1] for m in members]
    if len(set(classes)) > 1 or classes[0] is None:
        raise ValueError(
            f"Argument `members` must all predict the same known number of classes. Received: members with num_classes={classes}"
        )
    return list(members)


@keras.saving.register_keras_serializable(package="supernet")
class Ensemble(keras.Model):
    """K trained classifiers combined into one prediction by voting.

    The model runs every member on the same input and combines their class
    probabilities without any trained weights of its own, so
    `model.predict(x)` is the ensemble's prediction and `model.evaluate`
    scores it with any Keras loss and metric. The members are frozen and run
    in inference mode (dropout off, BatchNormalization statistics fixed)
    unless `train_members=True`. The model owns copies of the members
    (`model.members`, named `member_0`, `member_1`, ...): building or
    training it never changes the caller's models.

    The combiners are `keras.ops` versions of the functions in
    `supernet.metrics` and match them exactly:

    - `"softmax"`: the mean member probability (`metrics.softmax_vote`);
    - `"log_prob"`: `softmax(mean_k log max(p_k, eps))`, the normalised
      geometric mean (`metrics.log_prob_average`);
    - `"majority"`: the one-hot vector of the plurality of the members'
      predicted labels, ties broken as `metrics.majority_vote` breaks them
      (highest summed probability, then lowest class index). Accuracy is
      meaningful for this output, a likelihood is not.

    Args:
        members: list of K Keras classifiers with one input of one shape,
            each ending in probabilities over the same classes, such as the
            list `SnapshotEnsemble.models()` returns; a fused model with a
            `(batch, K, num_classes)` output (`PartitionedMLP` with
            `head="members"`) counts as its K members, alone or in a list.
        combiner: `"softmax"` (default), `"log_prob"` or `"majority"`.
        train_members: if `False` (default) the members are frozen and always
            run with `training=False`.
        eps: float > 0, lower clip of the probabilities before the log of
            `"log_prob"` (as in `metrics.log_prob_average`).
        name: model name.

    Returns:
        A `keras.Model` mapping the members' input to `(batch, num_classes)`
        combined probabilities; `model.num_members` is K (fused members
        counted one by one) and `model.num_classes` the number of classes.

    Example:
    >>> members = [
    ...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    ...     for _ in range(4)
    ... ]
    >>> model = Ensemble(members, combiner="log_prob")
    >>> model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> model.predict(np.zeros((2, 8)), verbose=0).shape
    (2, 3)
    >>> model.num_members
    4

    Reference:
        Softmax and majority voting as compared in thesis Fig. 17-18 and
        Tables 12-13; Huang et al. 2017 (Snapshot Ensembles) average the
        snapshots' softmax outputs.
    """

    def __init__(self, members, combiner="softmax", train_members=False, eps=1e-12, name="ensemble", **kwargs):
        members = _validate_members(members)
        if combiner not in COMBINERS:
            raise ValueError(f"Argument `combiner` must be one of {COMBINERS}. Received: combiner={combiner!r}")
        train_members = check_bool("train_members", train_members)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(f"Argument `eps` must be a float in (0, 1). Received: eps={eps!r}")
        check_finite_weights("members", members)

        # === Layers ===
        copies = [_copy_model(m, f"member_{k}") for k, m in enumerate(members)]
        if train_members:
            runners = copies
        else:
            for member in copies:
                # A model loaded with `trainable=False` keeps trainable sublayers,
                # and TensorFlow's attribute tracking skips assigning the current
                # value: only a change of `trainable` reaches every sublayer.
                member.trainable = True
                member.trainable = False
            runners = [FrozenModel(m, name=f"frozen_member_{k}") for k, m in enumerate(copies)]

        # === Functional Model ===
        input_spec = members[0].inputs[0]
        inputs = keras.Input(shape=tuple(input_spec.shape[1:]), dtype=input_spec.dtype, name="inputs")
        outputs = []
        for runner in runners:
            probs = runner(inputs)
            outputs.append(ops.expand_dims(probs, axis=1) if len(probs.shape) == 2 else probs)
        member_probs = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)
        combined = combine_member_probs(member_probs, combiner, eps)
        super().__init__(inputs=inputs, outputs=combined, name=name, **kwargs)

        # === Config ===
        self.members = copies
        self.combiner = combiner
        self.train_members = train_members
        self.eps = float(eps)
        self.num_members = int(member_probs.shape[1])
        self.num_classes = int(member_probs.shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "members": [keras.saving.serialize_keras_object(m) for m in self.members],
                "combiner": self.combiner,
                "train_members": self.train_members,
                "eps": self.eps,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)
