"""Layer-by-layer retraining: fit one layer at a time, from the output back.

The thesis (section 3.1, Table 3, Figures 4 and 5) takes a trained network,
freezes everything but its last layer and trains that layer for a few epochs,
then does the same for the second layer from the end, and so on: the last
four layers for 3, 3, 3 and 4 epochs add 2-5% validation accuracy on CIFAR10
in 13 epochs.

Why a function that drives `fit()`, and not a callback inside one `fit()`:

- Keras compiles the train step once per `fit()` with the trainable
  variables and the BatchNormalization modes of that moment. Flipping
  `layer.trainable` from a callback is silently ignored: on TensorFlow, a
  callback that froze all but the last layer at epoch 2 still changed the
  frozen Conv2D kernels and BatchNormalization moving statistics (checked on
  Keras 3.15). The `trainable` setter's own docstring asks for
  `model.make_train_function(force=True)` in that case, and `fit()` warns
  "A layer's `trainable` state has changed since the model was compiled ...
  Please recompile your model" on every backend.
- The JAX trainer carries `(trainable, non_trainable, optimizer)` variable
  lists as explicit state through the loop, so a mid-`fit()` switch of the
  trainable set depends on trainer internals per backend.
- Each stage needs a *fresh* optimizer (thesis: every layer is trained on its
  own). The optimizer of a running `fit()` is built once for the whole
  trainable set; replacing it mid-`fit()` again means rebuilding internals.

One `compile()` + `fit()` per stage uses only public API, works on every
backend, gives each stage a new optimizer by construction, and hands the
same user callbacks to every stage (epochs are numbered continuously via
`initial_epoch`, so CSV/TensorBoard logs read as one run).

What a stage trains. Stages are the layers that own trainable weights,
except BatchNormalization (`trainable_layers(model)`), from the last one
towards the input. Table 2 lists "Convolutional ... activation elu, batch
norm" as one layer, so with `include_batchnorm=True` (default) the
BatchNormalization layers that follow a stage's layer (before the next
weighted layer, in `model.layers` order) are trained with it: their
gamma/beta are fitted and their moving statistics updated. Every other
layer, including every other BatchNormalization, is frozen
(`trainable = False`), which in Keras 3 also runs BatchNormalization in
inference mode, so its moving statistics stay bit-identical. With
`include_batchnorm=False` all BatchNormalization layers stay frozen.
Dropout has no weights and keeps its training behaviour. Nested models are
one stage each.
"""

import dataclasses

import keras


def trainable_layers(model, include_batchnorm=False):
    """The top-level layers of `model` that own trainable weights, in order.

    Args:
        model: a built `keras.Model` (Sequential or functional).
        include_batchnorm: also list `BatchNormalization` layers. They are
            left out by default because layer-by-layer retraining does not
            make them stages of their own.

    Returns:
        A list of layers, input side first.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...     keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    >>> [layer.name for layer in trainable_layers(model)] == [
    ...     model.layers[0].name, model.layers[2].name]
    True
    """
    return [
        layer
        for layer in model.layers
        if layer.trainable_weights
        and (include_batchnorm or not isinstance(layer, keras.layers.BatchNormalization))
    ]


def layer_by_layer_stages(model, num_stages, include_batchnorm=True):
    """Which layers each retraining stage trains, last stage layer first.

    Args:
        model: a built `keras.Model`.
        num_stages: int, how many layers from the end to retrain.
        include_batchnorm: train the BatchNormalization layers that follow a
            stage's layer together with it (see the module docstring).

    Returns:
        A list of `num_stages` lists of layers; `stages[i][0]` is the
        `(i + 1)`-th layer from the end of `trainable_layers(model)`, followed
        by its BatchNormalization layers, if any.

    Reference:
        Bukowski & Dzwinel 2020, section 3.1 and Table 3.
    """
    weighted = trainable_layers(model)
    if not weighted:
        raise ValueError(
            f"Model `{model.name}` has no trainable layers to retrain. Received: "
            f"model with trainable flags {[layer.trainable for layer in model.layers]}"
        )
    if not isinstance(num_stages, int) or not 1 <= num_stages <= len(weighted):
        raise ValueError(
            f"Argument `num_stages` must be an int in [1, {len(weighted)}] (the number "
            f"of trainable non-BatchNormalization layers). Received: num_stages={num_stages}"
        )
    layers = model.layers
    weighted_ids = {id(layer) for layer in weighted}
    stages = []
    for layer in weighted[::-1][:num_stages]:
        group = [layer]
        if include_batchnorm:
            for follower in layers[layers.index(layer) + 1 :]:
                if id(follower) in weighted_ids:
                    break
                if isinstance(follower, keras.layers.BatchNormalization) and follower.trainable_weights:
                    group.append(follower)
        stages.append(group)
    return stages


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What one stage of `retrain_layer_by_layer` trained, and how it went.

    Attributes:
        stage: 1-based stage number (1 = last layer).
        layer: name of the layer the stage is about.
        trained_layers: names of every layer trained in the stage (the layer
            and its BatchNormalization layers).
        epochs: number of epochs requested for the stage.
        history: the stage's `History.history` (per-epoch logs).
        optimizer: the fresh optimizer the stage was compiled with.
    """

    stage: int
    layer: str
    trained_layers: tuple
    epochs: int
    history: dict
    optimizer: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def val_accuracy(self):
        """Validation accuracy after the stage's last epoch, or `None`."""
        values = self.history.get("val_accuracy")
        return float(values[-1]) if values else None

    def as_dict(self):
        """A JSON-friendly dict (without the optimizer)."""
        return {
            "stage": self.stage,
            "layer": self.layer,
            "trained_layers": list(self.trained_layers),
            "epochs": self.epochs,
            "history": {k: [float(v) for v in vs] for k, vs in self.history.items()},
            "val_accuracy": self.val_accuracy,
        }


def retrain_layer_by_layer(
    model,
    x=None,
    y=None,
    *,
    epochs_per_stage=(3, 3, 3, 4),
    optimizer_fn=None,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    validation_data=None,
    batch_size=None,
    callbacks=None,
    verbose="auto",
    include_batchnorm=True,
    compile_kwargs=None,
    **fit_kwargs,
):
    """Retrains a trained model one layer at a time, from the output back.

    Stage `i` (1-based) freezes every layer except the `i`-th layer from the
    end of `trainable_layers(model)` (plus its BatchNormalization layers when
    `include_batchnorm`), compiles the model with a new optimizer from
    `optimizer_fn()` and fits it for `epochs_per_stage[i - 1]` epochs. The
    same `callbacks` are passed to every stage's `fit()`; epochs are numbered
    continuously across stages. The original `trainable` flags of every layer
    (nested ones included) are restored at the end, even on error.

    The model is left compiled for the last stage: call `compile()` again
    before any further `fit()` (Keras warns if you forget).

    Args:
        model: a built, usually already trained `keras.Model`.
        x, y: training data, as for `Model.fit` (`y=None` for datasets).
        epochs_per_stage: one positive int per stage; its length is the number
            of layers retrained. Thesis Table 3: `(3, 3, 3, 4)`; Figures 4 and
            5: `(4, 4, 4, 4)`.
        optimizer_fn: zero-argument callable returning a *new* optimizer (or
            an optimizer name) for each stage. Default: Adam(1e-3).
        loss, metrics: as for `Model.compile`. The thesis uses (categorical)
            crossentropy; the default expects integer labels.
        validation_data: as for `Model.fit`; enables `val_accuracy` per stage.
        batch_size, callbacks, verbose: as for `Model.fit`.
        include_batchnorm: train the BatchNormalization layers that follow the
            stage's layer together with it.
        compile_kwargs: extra `Model.compile` arguments (e.g. `jit_compile`).
        **fit_kwargs: extra `Model.fit` arguments (e.g. `shuffle`).

    Returns:
        A list of `StageResult`, one per stage, in training order.

    Example:
    >>> results = retrain_layer_by_layer(model, x, y, epochs_per_stage=(3, 3, 3, 4),
    ...     validation_data=(x_val, y_val))  # doctest: +SKIP
    >>> [(r.layer, r.val_accuracy) for r in results]  # doctest: +SKIP

    Reference:
        Bukowski & Dzwinel 2020, section 3.1, Table 3, Figures 4 and 5.
    """
    epochs = _check_epochs_per_stage(epochs_per_stage)
    num_layers = len(trainable_layers(model))
    if len(epochs) > num_layers:
        raise ValueError(
            f"Argument `epochs_per_stage` asks for {len(epochs)} stages but model "
            f"`{model.name}` has only {num_layers} trainable non-BatchNormalization "
            f"layers. Received: epochs_per_stage={tuple(epochs_per_stage)}"
        )
    if optimizer_fn is None:
        optimizer_fn = _default_optimizer
    if not callable(optimizer_fn):
        raise ValueError(
            "Argument `optimizer_fn` must be a zero-argument callable returning a new "
            f"optimizer. Received: optimizer_fn={optimizer_fn!r}"
        )
    stages = layer_by_layer_stages(model, len(epochs), include_batchnorm=include_batchnorm)
    metrics = list(metrics) if metrics is not None else None
    compile_kwargs = dict(compile_kwargs or {})

    flags = _snapshot_trainable(model)
    results = []
    used_optimizers = []
    done_epochs = 0
    try:
        for index, (group, stage_epochs) in enumerate(zip(stages, epochs)):
            _train_only(model, group, flags)
            optimizer = optimizer_fn()
            if any(optimizer is used for used in used_optimizers):
                raise ValueError(
                    "Argument `optimizer_fn` must return a new optimizer on every call, "
                    "so that each stage starts from a fresh optimizer state. Received: "
                    f"the same object {optimizer!r} twice"
                )
            used_optimizers.append(optimizer)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, **compile_kwargs)
            if verbose:
                names = ", ".join(layer.name for layer in group)
                print(f"Layer-by-layer stage {index + 1}/{len(stages)}: training {names} "
                      f"for {stage_epochs} epochs")
            history = model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=done_epochs + stage_epochs,
                initial_epoch=done_epochs,
                validation_data=validation_data,
                callbacks=callbacks,
                verbose=verbose,
                **fit_kwargs,
            )
            done_epochs += stage_epochs
            results.append(
                StageResult(
                    stage=index + 1,
                    layer=group[0].name,
                    trained_layers=tuple(layer.name for layer in group),
                    epochs=stage_epochs,
                    history=dict(history.history),
                    optimizer=model.optimizer,
                )
            )
    finally:
        _restore_trainable(flags)
    return results


def retrain_last_layers(model, x=None, y=None, *, num_layers=4, epochs=4, **kwargs):
    """`retrain_layer_by_layer` with the same number of epochs for each layer.

    The setting of thesis Figures 4 and 5: the last four layers, one at a
    time from the last, four epochs each.

    Args:
        model, x, y: as for `retrain_layer_by_layer`.
        num_layers: positive int, how many layers from the end to retrain.
        epochs: positive int, epochs per layer.
        **kwargs: any other `retrain_layer_by_layer` argument.

    Returns:
        A list of `StageResult`, one per layer.
    """
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"Argument `num_layers` must be an int >= 1. Received: num_layers={num_layers}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"Argument `epochs` must be an int >= 1. Received: epochs={epochs}")
    return retrain_layer_by_layer(model, x, y, epochs_per_stage=(epochs,) * num_layers, **kwargs)


def _default_optimizer():
    return keras.optimizers.Adam(learning_rate=1e-3)


def _check_epochs_per_stage(epochs_per_stage):
    try:
        epochs = list(epochs_per_stage)
    except TypeError:
        epochs = None
    if not epochs or not all(
        isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs
    ):
        raise ValueError(
            "Argument `epochs_per_stage` must be a non-empty sequence of ints >= 1, "
            f"one per stage. Received: epochs_per_stage={epochs_per_stage!r}"
        )
    return epochs


def _all_layers(layer):
    # The `trainable` setter recurses through every tracked sub-layer (not only
    # `Model.layers`, e.g. the model inside a `FrozenModel`), so restoring the
    # flags exactly needs that same traversal, which Keras only exposes as
    # `_flatten_layers`. Parents come before their sub-layers.
    return layer._flatten_layers(include_self=True, recursive=True)


def _snapshot_trainable(model):
    return [(layer, layer.trainable) for layer in _all_layers(model)]


def _restore_trainable(flags, only=None):
    # In parent-first order, each setter's recursion is undone by the
    # sub-layers' own entries that follow.
    for layer, trainable in flags:
        if only is None or id(layer) in only:
            layer.trainable = trainable


def _train_only(model, group, flags):
    """Freezes every top-level layer except `group`, which gets its original flags."""
    for layer in model.layers:
        layer.trainable = False
    subtree = {id(sub) for layer in group for sub in _all_layers(layer)}
    _restore_trainable(flags, only=subtree)
