"""What engineers write instead of `PartitionedMLP`: the bench's peers.

Two hand-written ways to train K MLP members at once, each written as its
author would, so `supernet bench` can time the fused model against them on
the same work:

- `tower_model`: one Keras functional model with K independent Dense towers
  and K softmax outputs, compiled with one cross-entropy per output (Keras
  sums them): how a Keras user fuses sub-networks by hand;
- `JaxEnsemble`: pure JAX, the members' parameters stacked on a leading
  member axis, `jax.vmap` over the members, one `jax.jit`-ted training step
  with Adam written out and dropout from `jax.random`.

Both take the members' weights as `[[(kernel, bias), ...], ...]` (one list of
Dense layers per member, `member_weights` reads them from Keras models), so
the tests can check each against the loop over members on the same weights.
"""

import numpy as np


def member_weights(models):
    """`[[(kernel, bias), ...], ...]`: each model's Dense layers, in order.

    Args:
        models: Keras models whose Dense layers are one member each, e.g.
            `PartitionedMLP.members()` or K `supernet.models.mlp` models.
    """
    import keras

    return [
        [tuple(layer.get_weights()) for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        for model in models
    ]


def tower_model(input_dim, hidden_units, num_classes, num_members, dropout=0.0, seed=None):
    """One Keras functional model of K independent Dense towers, K softmax outputs.

    Every tower is a member: `Dense(relu)` and `Dropout` per hidden layer and
    a `Dense(softmax)` output named `member_{k}`. Compiled with one
    `sparse_categorical_crossentropy` per output, the training loss is the
    sum of the members' losses, as for a `PartitionedMLP`.

    Args:
        input_dim: int, number of input features.
        hidden_units: hidden widths of one member, e.g. `[200, 466, 466]`.
        num_classes: int, number of classes.
        num_members: int K.
        dropout: dropout rate after every hidden layer.
        seed: optional int seeding the dropout layers.

    Returns:
        An uncompiled `keras.Model` whose `predict` returns K arrays of
        `(batch, num_classes)` probabilities.

    Example:
    >>> model = tower_model(8, [4], 3, num_members=2)
    >>> [p.shape for p in model.predict(np.zeros((5, 8)), verbose=0)]
    [(5, 3), (5, 3)]
    """
    import keras

    inputs = keras.Input(shape=(input_dim,), name="inputs")
    outputs = []
    for k in range(num_members):
        x = inputs
        for i, units in enumerate(hidden_units):
            x = keras.layers.Dense(units, activation="relu", name=f"member_{k}_dense_{i}")(x)
            if dropout > 0:
                layer_seed = None if seed is None else seed + num_members * i + k
                x = keras.layers.Dropout(dropout, seed=layer_seed, name=f"member_{k}_dropout_{i}")(x)
        outputs.append(keras.layers.Dense(num_classes, activation="softmax", name=f"member_{k}")(x))
    return keras.Model(inputs, outputs, name="dense_towers")


def set_tower_weights(model, weights):
    """Copies `[[(kernel, bias), ...], ...]`, one list per member, into a `tower_model`."""
    for k, layers in enumerate(weights):
        names = [f"member_{k}_dense_{i}" for i in range(len(layers) - 1)] + [f"member_{k}"]
        for name, (kernel, bias) in zip(names, layers):
            model.get_layer(name).set_weights([kernel, bias])


def import_jax():
    """`(jax, jax.numpy)`, or ImportError saying how to install JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as error:
        raise ImportError(f"JAX is not installed ({error}); pip install -e \".[jax]\"") from error
    return jax, jnp


class JaxEnsemble:
    """K MLP members trained in pure JAX: stacked parameters, `vmap`, one jitted step.

    The parameters of layer `i` are one `(K, fan_in, fan_out)` kernel and one
    `(K, fan_out)` bias (Glorot-uniform kernels and zero biases, as Keras's
    `Dense`). A member's forward pass is written for one member and
    `jax.vmap`-ped over the member axis; the loss is the sum over members of
    their mean cross-entropy on the batch, as `MemberwiseCrossentropy`. One
    `jax.jit`-ted step computes it, its gradients and Keras's Adam update
    (`m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`, `w -= lr_t m /
    (sqrt(v) + epsilon)` with `lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)`
    and Keras's defaults); dropout masks come from `jax.random`, a key per
    step and member. Batches are drawn on the host from a shuffled order,
    the last one partial, as `fit` does.

    Args:
        input_dim: int, number of input features.
        hidden_units: hidden widths of one member.
        num_classes: int, number of classes.
        num_members: int K.
        dropout: dropout rate after every hidden layer.
        learning_rate, beta_1, beta_2, epsilon: Adam's, Keras's defaults.
        seed: int seeding the initial weights, dropout and the shuffling.

    Raises:
        ImportError: when JAX is not installed.
    """

    def __init__(self, input_dim, hidden_units, num_classes, num_members, dropout=0.0,
                 learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, seed=0):
        jax, jnp = import_jax()
        self.input_dim = int(input_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.num_classes = int(num_classes)
        self.num_members = int(num_members)
        self.dropout = float(dropout)
        self._jax, self._jnp = jax, jnp
        self._rng = np.random.default_rng(seed)
        key, self._dropout_key = jax.random.split(jax.random.key(seed))
        dims = [self.input_dim, *self.hidden_units, self.num_classes]
        self.params = []
        for fan_in, fan_out in zip(dims[:-1], dims[1:]):
            key, layer_key = jax.random.split(key)
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            kernel = jax.random.uniform(layer_key, (self.num_members, fan_in, fan_out), jnp.float32, -limit, limit)
            self.params.append((kernel, jnp.zeros((self.num_members, fan_out), jnp.float32)))
        self._reset_optimizer()
        # The step's old parameters and Adam moments are donated: updated in place, not copied.
        self._train_step = jax.jit(self._make_train_step(learning_rate, beta_1, beta_2, epsilon), donate_argnums=(0, 1))
        self._probabilities = jax.jit(lambda params, x: jax.nn.softmax(self._logits(params, x, None), axis=-1))
        self._loss = jax.jit(lambda params, x, y: self._loss_of(params, x, y, None))

    def _reset_optimizer(self):
        jax, jnp = self._jax, self._jnp
        # Separate buffers for m and v: both are donated to the step.
        m = jax.tree.map(jnp.zeros_like, self.params)
        v = jax.tree.map(jnp.zeros_like, self.params)
        self._opt_state = (jnp.zeros((), jnp.int32), m, v)

    def _logits(self, params, x, key):
        """`(K, batch, classes)` logits; dropout when `key` is given."""
        jax, jnp = self._jax, self._jnp
        rate = self.dropout

        def member(member_params, member_key):
            h = x
            for i, (kernel, bias) in enumerate(member_params[:-1]):
                h = jax.nn.relu(h @ kernel + bias)
                if member_key is not None and rate > 0:
                    keep = jax.random.bernoulli(jax.random.fold_in(member_key, i), 1.0 - rate, h.shape)
                    h = jnp.where(keep, h / (1.0 - rate), 0.0)
            kernel, bias = member_params[-1]
            return h @ kernel + bias

        if key is None:
            return jax.vmap(lambda p: member(p, None))(params)
        return jax.vmap(member)(params, jax.random.split(key, self.num_members))

    def _loss_of(self, params, x, y, key):
        jax, jnp = self._jax, self._jnp
        log_probs = jax.nn.log_softmax(self._logits(params, x, key), axis=-1)
        picked = jnp.take_along_axis(log_probs, y[None, :, None], axis=-1)[..., 0]
        return -jnp.sum(jnp.mean(picked, axis=1))

    def _make_train_step(self, learning_rate, beta_1, beta_2, epsilon):
        jax, jnp = self._jax, self._jnp

        def train_step(params, opt_state, x, y, dropout_key):
            step, m, v = opt_state
            step = step + 1
            key = jax.random.fold_in(dropout_key, step)
            loss, grads = jax.value_and_grad(self._loss_of)(params, x, y, key)
            t = step.astype(jnp.float32)
            lr_t = learning_rate * jnp.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)
            m = jax.tree.map(lambda m, g: m + (g - m) * (1.0 - beta_1), m, grads)
            v = jax.tree.map(lambda v, g: v + (g * g - v) * (1.0 - beta_2), v, grads)
            params = jax.tree.map(lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + epsilon), params, m, v)
            return params, (step, m, v), loss

        return train_step

    def set_member_weights(self, weights):
        """Loads `[[(kernel, bias), ...], ...]`, one list per member, and resets Adam."""
        jnp = self._jnp
        layers = zip(*weights)  # per layer: every member's (kernel, bias)
        self.params = [tuple(jnp.asarray(np.stack(arrays)) for arrays in zip(*layer)) for layer in layers]
        self._reset_optimizer()

    def count_params(self):
        return int(sum(kernel.size + bias.size for kernel, bias in self.params))

    def _step(self, x, y):
        # The loss stays on the device: reading it would wait for every step.
        self.params, self._opt_state, loss = self._train_step(self.params, self._opt_state, x, y, self._dropout_key)
        return loss

    def train_on_batch(self, x, y):
        """One training step; returns the batch's loss (sum over members)."""
        return float(self._step(x, np.asarray(y, np.int32)))

    def fit_epoch(self, x, y, batch_size):
        """One epoch over `x, y` in a fresh shuffled order; returns when the update is done."""
        order = self._rng.permutation(len(x))
        y = np.asarray(y, np.int32)
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            self._step(x[batch], y[batch])
        self._jax.block_until_ready(self.params)

    def predict(self, x, batch_size=1024):
        """`(batch, K, classes)` member probabilities, the layout of `PartitionedMLP.predict`."""
        parts = [np.asarray(self._probabilities(self.params, x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts, axis=1).transpose(1, 0, 2)

    def loss(self, x, y):
        """Sum over members of their mean cross-entropy on `x, y`, without dropout."""
        return float(self._loss(self.params, x, np.asarray(y, np.int32)))
