"""A wrapped model that always runs frozen and in inference mode."""

import keras


@keras.saving.register_keras_serializable(package="supernet")
class FrozenModel(keras.layers.Layer):
    """Runs a wrapped model with `training=False`, whatever the caller's mode.

    Freezing (`trainable = False`) stops weight updates and puts
    BatchNormalization in inference mode, but a functional model passes the
    outer `training=True` of `fit()` on to its Dropout layers. A SuperNet's
    frozen members must behave exactly as at prediction time while its head
    trains, so they are wrapped in this layer, whose `call` takes no
    `training` argument and always calls the model in inference mode.

    Args:
        model: the `keras.Model` (or layer) to wrap; it is set non-trainable.

    Call arguments:
        inputs: the inputs of `model`.

    Example:
    >>> member = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5)])
    >>> frozen = FrozenModel(member)
    >>> x = np.ones((1, 4))
    >>> bool(np.all(frozen(x) == x))
    True
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.model.trainable = False

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)

    def call(self, inputs):
        return self.model(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.model.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"model": keras.saving.serialize_keras_object(self.model)})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)
