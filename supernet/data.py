"""Dataset loaders for the SuperNet experiments.

Every loader returns a `Dataset`: NumPy arrays for a train / validation / test
split, ready for `model.fit()`. Images are `float32` in `[0, 1]`, labels are
1-D `int64`, and the validation split is carved from the official training set
with a stratified, seeded split, so the official test set is never touched.

Where the raw files come from, in order:

1. an explicit `data_dir=` argument,
2. the `SUPERNET_DATA_DIR` environment variable,
3. the standard download (`keras.datasets`, `sklearn.datasets`, TFDS).

A data directory (1 or 2) is an offline mirror with this layout:

```
fashion-mnist/train-images-idx3-ubyte.gz   (and the other three idx .gz files)
cifar10.npz                                (x_train, y_train, x_test, y_test)
cifar100.npz or cifar-100-python/         (cifar10.npz keys / official pickles)
20news/20news-bydate_py3.pkz               (scikit-learn's own cache file)
```

When a data directory is set but a dataset's files are missing from it, the
loader raises a `DatasetNotFoundError` (a `FileNotFoundError`) instead of
silently downloading. Truncated
or corrupt files raise a `ValueError` naming the file; a partial dataset is
never returned.

Example:

```python
from supernet import data

ds = data.load("fashion_mnist", data_dir="path/to/mirror", subset=0.1)
print(ds.summary())
model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val))
```
"""

import contextlib
import dataclasses
import functools
import gzip
import io
import os
import pathlib
import pickle
import zipfile
import zlib

import numpy as np

from supernet._validation import check_labels

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetNotFoundError",
    "cifar10",
    "cifar100",
    "digits",
    "fashion_mnist",
    "holdout_split",
    "load",
    "newsgroups20",
    "resolve_data_dir",
    "synthetic",
    "tfds_dataset",
]

DATASETS = (
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "newsgroups20",
    "digits",
    "synthetic",
)
"""Names accepted by `load()`; `"tfds:NAME"` is accepted as well."""

DATA_DIR_ENV = "SUPERNET_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing from the offline data directory."""

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_FINE_CLASS_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee",
    "beetle", "bicycle", "bottle", "bowl", "boy", "bridge", "bus",
    "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab",
    "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree",
    "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit",
    "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark",
    "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel",
    "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR100_COARSE_CLASS_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers",
    "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals",
    "non-insect_invertebrates", "people", "reptiles", "small_mammals",
    "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

_FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_NEWSGROUPS_CACHE = "20news-bydate_py3.pkz"

# idx type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# === Dataset ===


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A classification dataset split into train, validation and test arrays.

    Args:
        name: the dataset's name, e.g. `"fashion_mnist"`.
        x_train: training inputs, shape `(n_train,) + input_shape`.
        y_train: training labels, 1-D `int64` in `[0, num_classes)`.
        x_val: validation inputs, carved from the official training set.
            Empty (`n_val == 0`) when `validation_size=0`.
        y_val: validation labels.
        x_test: test inputs (the official test set, possibly subsampled).
        y_test: test labels.
        num_classes: number of classes of the task (not the number of
            classes observed in a small subset).
        input_shape: shape of one example, e.g. `(784,)` or `(32, 32, 3)`.
        class_names: one human-readable name per class.

    Example:

    >>> ds = digits(validation_size=0.2)
    >>> ds.summary()
    'digits: train 1077, val 270, test 450, input_shape (64,), 10 classes'
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple
    class_names: tuple

    def __post_init__(self):
        for split in ("train", "val", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(
                    f"`x_{split}` and `y_{split}` must have the same length. "
                    f"Received: len(x_{split})={len(x)}, "
                    f"len(y_{split})={len(y)}"
                )
        for split in ("train", "val", "test"):
            check_labels(f"y_{split}", getattr(self, f"y_{split}"), self.num_classes)
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                "`class_names` must have one entry per class. Received: "
                f"len(class_names)={len(self.class_names)}, "
                f"num_classes={self.num_classes}"
            )

    def summary(self):
        """Returns a one-line description of the split sizes."""
        return (
            f"{self.name}: train {len(self.x_train)}, val {len(self.x_val)}, "
            f"test {len(self.x_test)}, input_shape {tuple(self.input_shape)}, "
            f"{self.num_classes} classes"
        )

    def __repr__(self):
        return f"<Dataset {self.summary()}>"


# === Public loaders ===


def resolve_data_dir(data_dir=None):
    """Returns the offline data directory to read from, or `None`.

    Args:
        data_dir: an explicit directory (`str` or `pathlib.Path`). Takes
            precedence over the environment.

    Returns:
        `pathlib.Path(data_dir)` if given, else `pathlib.Path` of the
        `SUPERNET_DATA_DIR` environment variable if it is set and non-empty,
        else `None`, meaning "use the standard download".

    Example:

    >>> resolve_data_dir("/tmp/mirror")
    PosixPath('/tmp/mirror')
    """
    if data_dir is not None and str(data_dir) != "":
        return pathlib.Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return pathlib.Path(env).expanduser()
    return None


def load(
    name, *, data_dir=None, validation_size=0.1, subset=None, seed=0, **kwargs
):
    """Loads a dataset by name.

    Args:
        name: one of `DATASETS` (`"fashion_mnist"`, `"cifar10"`,
            `"cifar100"`, `"newsgroups20"`, `"digits"`, `"synthetic"`), or
            `"tfds:NAME"` for any supervised TFDS dataset. Dashes are
            accepted for underscores (`"fashion-mnist"`).
        data_dir: offline data directory; see `resolve_data_dir()`. Ignored
            by `"digits"` and `"synthetic"`, which need no files.
        validation_size: fraction in `[0, 1)` or a positive count of
            training examples held out, stratified, as the validation split.
        subset: `None` for the full data, a fraction in `(0, 1]`, or a
            positive count of training examples; see `fashion_mnist()`.
        seed: seed of the subsampling and of the validation split.
        **kwargs: passed to the specific loader, e.g. `flatten=False` for
            Fashion-MNIST or `max_features=` for 20 Newsgroups.

    Returns:
        A `Dataset`.

    Example:

    >>> ds = load("digits", validation_size=0)
    >>> ds.x_train.shape, len(ds.x_val)
    ((1347, 64), 0)
    """
    if not isinstance(name, str):
        raise ValueError(
            f"Argument `name` must be a string. Received: name={name!r}"
        )
    common = dict(validation_size=validation_size, subset=subset, seed=seed)
    if name.startswith("tfds:"):
        return tfds_dataset(name[5:], data_dir=data_dir, **common, **kwargs)
    key = name.strip().lower().replace("-", "_")
    if key == "fashion_mnist":
        return fashion_mnist(data_dir=data_dir, **common, **kwargs)
    if key == "cifar10":
        return cifar10(data_dir=data_dir, **common, **kwargs)
    if key == "cifar100":
        return cifar100(data_dir=data_dir, **common, **kwargs)
    if key == "newsgroups20":
        return newsgroups20(data_dir=data_dir, **common, **kwargs)
    if key == "digits":
        return digits(**common, **kwargs)
    if key == "synthetic":
        return _synthetic(**common, **kwargs)
    raise ValueError(
        f"Unknown dataset. Expected one of {DATASETS} or 'tfds:NAME'. "
        f"Received: name={name!r}"
    )


def fashion_mnist(
    *, data_dir=None, validation_size=0.1, subset=None, seed=0, flatten=True
):
    """Loads Fashion-MNIST (60,000 train / 10,000 test, 10 classes).

    Reads the four official idx `.gz` files from `<data_dir>/fashion-mnist/`,
    or downloads them with `keras.datasets.fashion_mnist` when no data
    directory is set.

    Args:
        data_dir: offline data directory; see `resolve_data_dir()`.
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        subset: `None` for the full data; a fraction `f` in `(0, 1]` keeps a
            stratified `f` of the training set and `f` of the test set; an
            int `n` keeps `n` training examples and
            `round(n * n_test / n_train)` test examples (the same fraction).
            Subsampling happens before the validation split.
        seed: seed of the subsampling and of the validation split.
        flatten: if `True`, inputs have shape `(784,)`; otherwise
            `(28, 28, 1)`.

    Returns:
        A `Dataset` with `float32` inputs in `[0, 1]` and `int64` labels.

    Example:

    >>> ds = fashion_mnist(subset=1000)  # from SUPERNET_DATA_DIR
    >>> ds.x_train.shape
    (900, 784)

    Reference:
        Xiao et al., "Fashion-MNIST", arXiv:1708.07747 (2017).
    """
    _check_split_args(validation_size, subset)
    root = resolve_data_dir(data_dir)
    x_train, y_train, x_test, y_test = _raw_fashion_mnist(_cache_key(root))
    shape = (784,) if flatten else (28, 28, 1)
    return _assemble(
        "fashion_mnist",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        class_names=FASHION_MNIST_CLASS_NAMES,
        validation_size=validation_size,
        subset=subset,
        seed=seed,
        transform=lambda x: _scale_images(x).reshape((-1,) + shape),
    )


def cifar10(*, data_dir=None, validation_size=0.1, subset=None, seed=0):
    """Loads CIFAR-10 (50,000 train / 10,000 test, 10 classes, 32x32x3).

    Reads `<data_dir>/cifar10.npz` (keys `x_train`, `y_train`, `x_test`,
    `y_test`, uint8 images in NHWC order) or downloads with
    `keras.datasets.cifar10` when no data directory is set.

    Args:
        data_dir: offline data directory; see `resolve_data_dir()`.
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        subset: `None`, a fraction in `(0, 1]` or a count of training
            examples; see `fashion_mnist()`.
        seed: seed of the subsampling and of the validation split.

    Returns:
        A `Dataset` with `float32` inputs of shape `(32, 32, 3)` in `[0, 1]`.

    Example:

    >>> ds = cifar10(validation_size=5000)  # from SUPERNET_DATA_DIR
    >>> ds.x_val.shape
    (5000, 32, 32, 3)

    Reference:
        Krizhevsky, "Learning Multiple Layers of Features from Tiny Images"
        (2009).
    """
    _check_split_args(validation_size, subset)
    root = resolve_data_dir(data_dir)
    x_train, y_train, x_test, y_test = _raw_cifar("cifar10", _cache_key(root))
    return _assemble(
        "cifar10",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        class_names=CIFAR10_CLASS_NAMES,
        validation_size=validation_size,
        subset=subset,
        seed=seed,
        transform=_scale_images,
    )


def cifar100(
    *,
    data_dir=None,
    validation_size=0.1,
    subset=None,
    seed=0,
    label_mode="fine",
):
    """Loads CIFAR-100 (50,000 train / 10,000 test, 32x32x3).

    Reads `<data_dir>/cifar100.npz` (same keys as `cifar10.npz`, fine
    labels; coarse labels from optional keys `y_train_coarse` /
    `y_test_coarse`) or the official `<data_dir>/cifar-100-python/` folder
    (pickled `train`, `test`, `meta`), or downloads with
    `keras.datasets.cifar100` when no data directory is set.

    Args:
        data_dir: offline data directory; see `resolve_data_dir()`.
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        subset: `None`, a fraction in `(0, 1]` or a count of training
            examples; see `fashion_mnist()`.
        seed: seed of the subsampling and of the validation split.
        label_mode: `"fine"` (100 classes) or `"coarse"` (20 superclasses).

    Returns:
        A `Dataset` with `float32` inputs of shape `(32, 32, 3)` in `[0, 1]`.

    Example:

    >>> ds = cifar100(label_mode="coarse")  # doctest: +SKIP
    >>> ds.num_classes  # doctest: +SKIP
    20
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(
            "Argument `label_mode` must be 'fine' or 'coarse'. "
            f"Received: label_mode={label_mode!r}"
        )
    _check_split_args(validation_size, subset)
    root = resolve_data_dir(data_dir)
    x_train, y_train, x_test, y_test = _raw_cifar(
        f"cifar100_{label_mode}", _cache_key(root)
    )
    names = (
        CIFAR100_FINE_CLASS_NAMES
        if label_mode == "fine"
        else CIFAR100_COARSE_CLASS_NAMES
    )
    return _assemble(
        "cifar100",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=len(names),
        class_names=names,
        validation_size=validation_size,
        subset=subset,
        seed=seed,
        transform=_scale_images,
    )


def newsgroups20(
    *,
    data_dir=None,
    validation_size=0.1,
    subset=None,
    seed=0,
    max_features=10000,
    remove=(),
):
    """Loads 20 Newsgroups "bydate" (11,314 / 7,532 posts) as TF-IDF vectors.

    The raw posts come from scikit-learn's cache file
    `<data_dir>/20news/20news-bydate_py3.pkz` or, with no data directory,
    from `sklearn.datasets.fetch_20newsgroups`'s standard download. The
    posts are in scikit-learn's default shuffled order (`random_state=42`).
    A `TfidfVectorizer(max_features=max_features)` is fitted on the final
    training split only (after subsampling and the validation carve-out),
    then applied to the validation and test posts.

    Args:
        data_dir: offline data directory; see `resolve_data_dir()`.
        validation_size: fraction in `[0, 1)` or a positive count of training
            posts held out, stratified, as the validation split.
        subset: `None`, a fraction in `(0, 1]` or a count of training posts;
            see `fashion_mnist()`.
        seed: seed of the subsampling and of the validation split.
        max_features: vocabulary size of the TF-IDF vectorizer.
        remove: parts of each post to strip, any of `"headers"`,
            `"footers"`, `"quotes"`. The thesis used the plain posts, `()`.

    Returns:
        A `Dataset` with dense `float32` inputs of shape `(n_features,)`,
        where `n_features <= max_features`, and 20 classes.

    Example:

    >>> ds = newsgroups20(max_features=2000)  # from SUPERNET_DATA_DIR
    >>> ds.x_train.shape
    (10182, 2000)
    """
    if (
        isinstance(max_features, bool)
        or not isinstance(max_features, (int, np.integer))
        or max_features < 1
    ):
        raise ValueError(
            "Argument `max_features` must be a positive int. "
            f"Received: max_features={max_features!r}"
        )
    if isinstance(remove, str):
        remove = (remove,)
    remove = tuple(remove)
    unknown = set(remove) - {"headers", "footers", "quotes"}
    if unknown:
        raise ValueError(
            "Argument `remove` must contain only 'headers', 'footers' or "
            f"'quotes'. Received: remove={remove!r}"
        )
    _check_split_args(validation_size, subset)
    root = resolve_data_dir(data_dir)
    (x_train, y_train, x_test, y_test), names = _raw_newsgroups(
        _cache_key(root), remove
    )
    train_idx, val_idx, test_idx = _split_indices(
        y_train,
        y_test,
        validation_size=validation_size,
        subset=subset,
        seed=seed,
    )

    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(max_features=max_features, dtype=np.float32)
    vectorizer.fit(x_train[train_idx])

    n_features = len(vectorizer.vocabulary_)

    def featurize(posts):
        # TfidfVectorizer refuses empty input (e.g. `validation_size=0`).
        if len(posts) == 0:
            return np.zeros((0, n_features), dtype=np.float32)
        return vectorizer.transform(posts).toarray()

    x_tr = featurize(x_train[train_idx])
    x_va = featurize(x_train[val_idx])
    x_te = featurize(x_test[test_idx])
    return Dataset(
        name="newsgroups20",
        x_train=x_tr.astype(np.float32, copy=False),
        y_train=y_train[train_idx].astype(np.int64),
        x_val=x_va.astype(np.float32, copy=False),
        y_val=y_train[val_idx].astype(np.int64),
        x_test=x_te.astype(np.float32, copy=False),
        y_test=y_test[test_idx].astype(np.int64),
        num_classes=len(names),
        input_shape=(x_tr.shape[1],),
        class_names=tuple(names),
    )


def digits(*, validation_size=0.1, subset=None, seed=0, test_size=0.25):
    """Loads scikit-learn's bundled 8x8 digits (1,797 images, 10 classes).

    No download and no data directory: the data ships with scikit-learn.
    Useful for fast end-to-end tests on real (if tiny) data. The test split
    is a stratified, seeded `test_size` of all images; the validation split
    is then carved from the rest.

    Args:
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        subset: `None`, a fraction in `(0, 1]` or a count of training
            examples; see `fashion_mnist()`.
        seed: seed of the test split, the subsampling and the validation
            split.
        test_size: fraction in `(0, 1)` or a positive count of images used
            as the test set.

    Returns:
        A `Dataset` with `float32` inputs of shape `(64,)` in `[0, 1]`.

    Example:

    >>> ds = digits()
    >>> ds.x_train.shape, ds.x_test.shape
    ((1212, 64), (450, 64))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_fraction_or_count("test_size", test_size, allow_zero=False)
    _check_split_args(validation_size, subset)
    bunch = load_digits()
    x = bunch.data.astype(np.float32) / np.float32(16.0)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    return _assemble(
        "digits",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        validation_size=validation_size,
        subset=subset,
        seed=seed,
    )


def tfds_dataset(
    name,
    *,
    data_dir=None,
    validation_size=0.1,
    subset=None,
    seed=0,
    train_split="train",
    test_split="test",
):
    """Loads any supervised TensorFlow Datasets dataset into memory.

    With a data directory (argument or `SUPERNET_DATA_DIR`) it is used as
    TFDS's `data_dir` and nothing is downloaded: the dataset must already be
    prepared there, in TFDS's own layout `<data_dir>/<name>/<version>/` as
    written by `tfds.builder(name, data_dir=...).download_and_prepare()`.
    Without one, TFDS's default directory and download are used. `uint8`
    inputs (images) are scaled to `float32` in `[0, 1]`; other inputs are
    cast to `float32`.

    Args:
        name: the TFDS name, e.g. `"mnist"` or `"svhn_cropped"`.
        data_dir: offline data directory; see `resolve_data_dir()`.
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        subset: `None`, a fraction in `(0, 1]` or a count of training
            examples; see `fashion_mnist()`.
        seed: seed of the subsampling and of the validation split.
        train_split: the TFDS split used for training (and validation).
        test_split: the TFDS split used for testing.

    Returns:
        A `Dataset` named `"tfds:<name>"`.

    Example:

    >>> ds = tfds_dataset("mnist", subset=0.1)  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Argument `name` must be a non-empty TFDS name. "
            f"Received: name={name!r}"
        )
    _check_split_args(validation_size, subset)
    import tensorflow_datasets as tfds

    root = resolve_data_dir(data_dir)
    builder = tfds.builder(name, data_dir=None if root is None else str(root))
    if root is not None and not builder.is_prepared():
        raise DatasetNotFoundError(
            f"Dataset 'tfds:{name}' is not prepared in the data directory "
            f"{root}: looked for {builder.data_dir}. Run "
            f"`tfds.builder({name!r}, data_dir=...).download_and_prepare()` "
            f"on a machine with internet, or unset {DATA_DIR_ENV} and the "
            "`data_dir` argument to download it."
        )
    if not builder.info.supervised_keys:
        raise ValueError(
            f"TFDS dataset {name!r} has no supervised (input, label) keys, so "
            "it cannot be loaded as a classification `Dataset`."
        )
    if root is None:
        builder.download_and_prepare()
    splits = builder.as_dataset(
        split=[train_split, test_split], as_supervised=True
    )
    x_train, y_train = _supervised_to_numpy(splits[0])
    x_test, y_test = _supervised_to_numpy(splits[1])
    label = builder.info.supervised_keys[1]
    feature = (
        builder.info.features[label] if isinstance(label, str) else None
    )
    num_classes = getattr(feature, "num_classes", None)
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    names = getattr(feature, "names", None) or [
        str(i) for i in range(num_classes)
    ]
    return _assemble(
        f"tfds:{name}",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=int(num_classes),
        class_names=tuple(names),
        validation_size=validation_size,
        subset=subset,
        seed=seed,
        transform=_to_float_inputs,
    )


def synthetic(
    *,
    num_classes=10,
    input_shape=(32, 32, 3),
    num_train=512,
    num_test=128,
    validation_size=0.1,
    seed=0,
):
    """Generates a small, learnable classification dataset.

    Each class has its own mean in `[0.25, 0.75]^d`; an example is its class
    mean plus Gaussian noise (std 0.15), clipped to `[0, 1]`, so a linear
    model separates the classes well. Classes are balanced (round robin).
    Meant for tests of code paths whose real data is not available offline,
    e.g. CIFAR-100 (`num_classes=100`).

    Args:
        num_classes: number of classes, at least 2.
        input_shape: shape of one example.
        num_train: number of training examples (validation included), at
            least `num_classes`.
        num_test: number of test examples.
        validation_size: fraction in `[0, 1)` or a positive count of training
            examples held out, stratified, as the validation split.
        seed: seed of the generator and of the validation split.

    Returns:
        A `Dataset` with `float32` inputs in `[0, 1]`.

    Example:

    >>> ds = synthetic(num_classes=3, input_shape=(4,), num_train=30)
    >>> ds.x_train.shape, ds.x_val.shape
    ((27, 4), (3, 4))
    """
    return _synthetic(
        num_classes=num_classes,
        input_shape=input_shape,
        num_train=num_train,
        num_test=num_test,
        validation_size=validation_size,
        seed=seed,
    )


# === Held-out splits ===


def holdout_split(ds, holdout_size=0.1, *, seed=0):
    """Splits a dataset's training part into the members' data and a held-out part.

    For stacking: the members of an ensemble are trained on the first part
    and a combiner, e.g. a SuperNet's head (`supernet.training.supermodel`'s
    `head_data`), on the held-out part, which the members never saw. A head
    re-trained on the members' own training data learns from predictions that
    are far more confident than on new data.

    The held-out part is a stratified, seeded sample of `ds.x_train` (a plain
    seeded sample when a class is too rare to stratify). The validation and
    test splits are left as they are.

    Args:
        ds: a `Dataset`.
        holdout_size: fraction in `(0, 1)` of the training examples (rounded
            up) or a positive count of them, held out.
        seed: int seed of the split.

    Returns:
        `(members_ds, (x_holdout, y_holdout))`: a `Dataset` equal to `ds`
        except that its training part is the rest of `ds`'s training part, and
        the held-out inputs and labels. Both parts keep the original order.

    Example:

    >>> ds = digits(validation_size=0.1)
    >>> members_ds, (x_head, y_head) = holdout_split(ds, 0.1, seed=0)
    >>> len(members_ds.x_train), len(x_head), len(ds.x_train)
    (1090, 122, 1212)
    """
    if not isinstance(ds, Dataset):
        raise ValueError(
            "Argument `ds` must be a supernet.data.Dataset. "
            f"Received: ds of type {type(ds).__name__}"
        )
    _check_fraction_or_count("holdout_size", holdout_size, allow_zero=False)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(
            f"Argument `seed` must be an int. Received: seed={seed!r}"
        )
    n = len(ds.y_train)
    n_holdout = _as_count(holdout_size, n)
    if n_holdout >= n:
        raise ValueError(
            "Argument `holdout_size` leaves no training examples for the "
            f"members: {n_holdout} of {n} would be held out. "
            f"Received: holdout_size={holdout_size!r}"
        )
    holdout = np.zeros(n, dtype=bool)
    holdout[_stratified_take(ds.y_train, n_holdout, int(seed))] = True
    for part, mask in (("members' part", ~holdout), ("held-out part", holdout)):
        classes = np.unique(ds.y_train[mask])
        if len(classes) < 2:
            raise ValueError(
                "Argument `holdout_size` must leave at least 2 classes in "
                f"both parts of the training set; the {part} holds "
                f"{int(mask.sum())} example(s) of class(es) "
                f"{classes.tolist()}. Received: holdout_size={holdout_size!r}"
            )
    members_ds = dataclasses.replace(
        ds, x_train=ds.x_train[~holdout], y_train=ds.y_train[~holdout]
    )
    return members_ds, (ds.x_train[holdout], ds.y_train[holdout])


# === Splitting and conversion ===


def _synthetic(
    *,
    num_classes=10,
    input_shape=(32, 32, 3),
    num_train=512,
    num_test=128,
    validation_size=0.1,
    subset=None,
    seed=0,
):
    for arg, value, minimum in (
        ("num_classes", num_classes, 2),
        ("num_train", num_train, num_classes),
        ("num_test", num_test, 1),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < minimum
        ):
            raise ValueError(
                f"Argument `{arg}` must be an int >= {minimum}. "
                f"Received: {arg}={value!r}"
            )
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ValueError(
            "Argument `input_shape` must be a non-empty tuple of positive "
            f"ints. Received: input_shape={input_shape}"
        )
    _check_split_args(validation_size, subset)
    rng = np.random.default_rng(seed)
    dim = int(np.prod(input_shape))
    means = rng.uniform(0.25, 0.75, size=(num_classes, dim))

    def sample(n):
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        x = means[y] + rng.normal(0.0, 0.15, size=(n, dim))
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        return x.reshape((n,) + input_shape), y

    x_train, y_train = sample(num_train)
    x_test, y_test = sample(num_test)
    return _assemble(
        "synthetic",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=num_classes,
        class_names=tuple(f"class_{i}" for i in range(num_classes)),
        validation_size=validation_size,
        subset=subset,
        seed=seed,
    )


def _as_count(size, n):
    """A count as given, or a fraction of `n` rounded up."""
    if isinstance(size, (int, np.integer)):
        return int(size)
    return int(np.ceil(size * n))


def _check_fraction_or_count(arg, value, *, allow_zero):
    lower = "[0, 1)" if allow_zero else "(0, 1)"
    message = (
        f"Argument `{arg}` must be a float in {lower} or a positive int. "
        f"Received: {arg}={value!r}"
    )
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, (int, np.integer)):
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(message)
        return
    if isinstance(value, (float, np.floating)):
        if not (0.0 <= value < 1.0) or (value == 0.0 and not allow_zero):
            raise ValueError(message)
        return
    raise ValueError(message)


def _check_split_args(validation_size, subset):
    _check_fraction_or_count(
        "validation_size", validation_size, allow_zero=True
    )
    if subset is None:
        return
    message = (
        "Argument `subset` must be None, a float in (0, 1] or a positive "
        f"int. Received: subset={subset!r}"
    )
    if isinstance(subset, bool):
        raise ValueError(message)
    if isinstance(subset, (int, np.integer)):
        if subset < 1:
            raise ValueError(message)
    elif isinstance(subset, (float, np.floating)):
        if not (0.0 < subset <= 1.0):
            raise ValueError(message)
    else:
        raise ValueError(message)


def _stratified_take(y, size, seed):
    """Sorted indices of a stratified, seeded sample of `size` examples."""
    from sklearn.model_selection import train_test_split

    n = len(y)
    if size >= n:
        return np.arange(n)
    idx = np.arange(n)
    _, counts = np.unique(y, return_counts=True)
    # sklearn refuses to stratify when a side would miss a class; a plain
    # seeded sample is the best we can do for such tiny samples.
    stratify = (
        y
        if counts.min() >= 2 and min(size, n - size) >= len(counts)
        else None
    )
    taken, _ = train_test_split(
        idx, train_size=size, stratify=stratify, random_state=seed
    )
    return np.sort(taken)


def _split_indices(y_train, y_test, *, validation_size, subset, seed):
    """Returns sorted `(train_idx, val_idx, test_idx)` into the raw arrays."""
    n_train, n_test = len(y_train), len(y_test)
    if n_train == 0 or n_test == 0:
        raise ValueError(
            "The dataset is empty. Received: "
            f"{n_train} training and {n_test} test examples"
        )
    train_idx, test_idx = np.arange(n_train), np.arange(n_test)
    if subset is not None:
        if isinstance(subset, (int, np.integer)):
            if subset > n_train:
                raise ValueError(
                    "Argument `subset` must be at most the number of "
                    f"training examples ({n_train}). Received: subset={subset}"
                )
            train_size = int(subset)
            test_size = max(1, int(round(subset * n_test / n_train)))
        else:
            train_size = max(1, int(round(subset * n_train)))
            test_size = max(1, int(round(subset * n_test)))
        train_idx = _stratified_take(y_train, train_size, seed)
        test_idx = _stratified_take(y_test, test_size, seed)
    if len(np.unique(y_train[train_idx])) < 2:
        raise ValueError(
            "The training set must contain at least 2 classes after "
            f"subsampling. Received: subset={subset!r}, which keeps "
            f"{len(train_idx)} example(s) of a single class"
        )

    n = len(train_idx)
    n_val = _as_count(validation_size, n)
    if n_val == 0:
        return train_idx, train_idx[:0], test_idx
    if n_val >= n:
        raise ValueError(
            "Argument `validation_size` leaves no training examples: "
            f"{n_val} of {n} would be held out. "
            f"Received: validation_size={validation_size!r}"
        )
    from sklearn.model_selection import train_test_split

    y = y_train[train_idx]
    _, counts = np.unique(y, return_counts=True)
    stratify = (
        y
        if counts.min() >= 2 and min(n_val, n - n_val) >= len(counts)
        else None
    )
    fit_idx, val_idx = train_test_split(
        train_idx, test_size=n_val, stratify=stratify, random_state=seed
    )
    return np.sort(fit_idx), np.sort(val_idx), test_idx


def _assemble(
    name,
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    num_classes,
    class_names,
    validation_size,
    subset,
    seed,
    transform=None,
):
    """Subsamples, splits and converts raw arrays into a `Dataset`."""
    y_train = np.asarray(y_train).reshape(-1).astype(np.int64)
    y_test = np.asarray(y_test).reshape(-1).astype(np.int64)
    train_idx, val_idx, test_idx = _split_indices(
        y_train,
        y_test,
        validation_size=validation_size,
        subset=subset,
        seed=seed,
    )
    transform = transform or (lambda x: np.array(x, dtype=np.float32))
    x_tr = transform(x_train[train_idx])
    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=y_train[train_idx],
        x_val=transform(x_train[val_idx]),
        y_val=y_train[val_idx],
        x_test=transform(x_test[test_idx]),
        y_test=y_test[test_idx],
        num_classes=int(num_classes),
        input_shape=tuple(x_tr.shape[1:]),
        class_names=tuple(class_names),
    )


def _scale_images(x):
    return x.astype(np.float32) / np.float32(255.0)


def _to_float_inputs(x):
    if x.dtype == np.uint8:
        return _scale_images(x)
    return x.astype(np.float32)


def _supervised_to_numpy(ds):
    """Stacks a `tf.data.Dataset` of `(input, label)` pairs into arrays."""
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("The TFDS split is empty.")
    return np.stack(xs), np.asarray(ys).reshape(-1).astype(np.int64)


# === Raw readers (cached, read-only) ===


def _cache_key(root):
    return None if root is None else str(root.resolve())


def _read_only(*arrays):
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _missing_error(dataset, root, paths):
    looked_for = ", ".join(str(p) for p in paths)
    return DatasetNotFoundError(
        f"Dataset '{dataset}' was not found in the data directory {root}. "
        f"Looked for: {looked_for}. Put the files there, point "
        f"{DATA_DIR_ENV} or `data_dir` at a directory that has them, or "
        f"unset both to download the dataset."
    )


def _read_idx_gz(path):
    """Parses one idx `.gz` file, validating its header and length."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(
            f"Could not read {path}: the gzip file is corrupt or truncated "
            f"({e}). Replace it with the official file."
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path} is not an idx file: bad magic number {raw[:4]!r}."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its idx header is incomplete.")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path} is corrupt or truncated: its header declares shape "
            f"{dims} ({expected} bytes) but it holds {len(raw)} bytes."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


@functools.lru_cache(maxsize=2)
def _raw_fashion_mnist(root):
    if root is None:
        import keras

        (x_train, y_train), (x_test, y_test) = (
            keras.datasets.fashion_mnist.load_data()
        )
        return _read_only(x_train, y_train, x_test, y_test)
    folder = pathlib.Path(root) / "fashion-mnist"
    paths = {k: folder / v for k, v in _FASHION_MNIST_FILES.items()}
    missing = [p for p in paths.values() if not p.is_file()]
    if missing:
        raise _missing_error("fashion_mnist", root, missing)
    arrays = {k: _read_idx_gz(p) for k, p in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        x_path, y_path = paths[f"x_{split}"], paths[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise ValueError(
                f"{x_path} must hold uint8 images of shape (n, 28, 28). "
                f"Received: shape={x.shape}, dtype={x.dtype}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"{y_path} must hold {len(x)} labels to match {x_path}. "
                f"Received: shape={y.shape}"
            )
        _check_labels(y, 10, y_path)
    return _read_only(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    )


def _check_labels(y, num_classes, path):
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{path} holds labels outside [0, {num_classes}): "
            f"min={y.min()}, max={y.max()}."
        )


def _read_npz(path, num_classes, coarse=False):
    """Reads a CIFAR-style npz, validating keys, shapes and completeness."""
    y_keys = ("y_train", "y_test")
    if coarse:
        y_keys = ("y_train_coarse", "y_test_coarse")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            wanted = ("x_train", "x_test", *y_keys)
            arrays = {k: f[k] for k in wanted if k in keys}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as e:
        raise ValueError(
            f"Could not read {path}: the npz file is corrupt or truncated "
            f"({type(e).__name__}: {e})."
        ) from e
    missing = {"x_train", "x_test", *y_keys} - set(arrays)
    if missing:
        raise ValueError(
            f"{path} lacks the keys {sorted(missing)}. "
            f"Received keys: {sorted(keys)}"
        )
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    y_train, y_test = arrays[y_keys[0]], arrays[y_keys[1]]
    for x, y in ((x_train, y_train), (x_test, y_test)):
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1:] == (1,) else y
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
            raise ValueError(
                f"{path} must hold uint8 images of shape (n, 32, 32, 3). "
                f"Received: shape={x.shape}, dtype={x.dtype}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"{path} must hold one label per image. Received: "
                f"{len(x)} images and labels of shape {y.shape}"
            )
        _check_labels(y, num_classes, path)
    return x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)


def _read_cifar100_python(folder, coarse):
    """Reads the official `cifar-100-python/{train,test}` pickles."""
    key = b"coarse_labels" if coarse else b"fine_labels"
    out = []
    for split in ("train", "test"):
        path = folder / split
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[key], dtype=np.int64)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
            raise ValueError(
                f"Could not read {path}: the pickle is corrupt or truncated "
                f"({type(e).__name__}: {e})."
            ) from e
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(
                f"{path} must hold uint8 rows of 3072 values and one label "
                f"each. Received: data shape {data.shape}, {len(labels)} labels"
            )
        _check_labels(labels, 20 if coarse else 100, path)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        out += [np.ascontiguousarray(images), labels]
    return tuple(out)


@functools.lru_cache(maxsize=2)
def _raw_cifar(which, root):
    coarse = which == "cifar100_coarse"
    if root is None:
        import keras

        if which == "cifar10":
            (x_train, y_train), (x_test, y_test) = (
                keras.datasets.cifar10.load_data()
            )
        else:
            (x_train, y_train), (x_test, y_test) = (
                keras.datasets.cifar100.load_data(
                    label_mode="coarse" if coarse else "fine"
                )
            )
        return _read_only(
            x_train, y_train.reshape(-1), x_test, y_test.reshape(-1)
        )
    root = pathlib.Path(root)
    if which == "cifar10":
        path = root / "cifar10.npz"
        if not path.is_file():
            raise _missing_error("cifar10", root, [path])
        return _read_only(*_read_npz(path, 10))
    npz, folder = root / "cifar100.npz", root / "cifar-100-python"
    if npz.is_file():
        return _read_only(*_read_npz(npz, 20 if coarse else 100, coarse=coarse))
    if (folder / "train").is_file() and (folder / "test").is_file():
        return _read_only(*_read_cifar100_python(folder, coarse))
    raise _missing_error(
        "cifar100", root, [npz, folder / "train", folder / "test"]
    )


@functools.lru_cache(maxsize=2)
def _raw_newsgroups(root, remove):
    from sklearn.datasets import fetch_20newsgroups

    def fetch(data_home):
        out = []
        for split in ("train", "test"):
            bunch = fetch_20newsgroups(
                data_home=data_home,
                subset=split,
                remove=remove,
                download_if_missing=data_home is None,
            )
            out += [np.asarray(bunch.data, dtype=object), bunch.target]
        return out, tuple(bunch.target_names)

    if root is None:
        arrays, names = fetch(None)
    else:
        home = pathlib.Path(root) / "20news"
        path = home / _NEWSGROUPS_CACHE
        if not path.is_file():
            raise _missing_error("newsgroups20", root, [path])
        # scikit-learn prints cache errors and then raises a bare OSError;
        # capture the print to give the reason in one clear error.
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                arrays, names = fetch(str(home))
        except OSError as e:
            reason = " ".join(log.getvalue().replace("_", "").split())
            raise ValueError(
                f"Could not read {path}: the scikit-learn cache is corrupt or "
                f"truncated ({reason or e})."
            ) from e
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                "The 20 Newsgroups data is incomplete: "
                f"{len(x)} posts and {len(y)} labels."
            )
    return _read_only(x_train, y_train, x_test, y_test), names

