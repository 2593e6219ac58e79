"""Tests for `supernet.data`.

Real-data tests read the offline mirror that `SUPERNET_DATA_DIR` points at
and are skipped, with the reason, where it is not set or lacks the files.
"""

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from supernet import data

# Unset, the mirror is a folder that cannot exist, so every real-data test skips.
MIRROR = Path(os.environ.get("SUPERNET_DATA_DIR") or "/nonexistent-supernet-data-mirror")
FASHION_DIR = MIRROR / "fashion-mnist"
CIFAR10_NPZ = MIRROR / "cifar10.npz"
NEWS_PKZ = MIRROR / "20news" / "20news-bydate_py3.pkz"
SKIP_REASON = "offline data mirror not found: set SUPERNET_DATA_DIR"

needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=SKIP_REASON,
)
needs_cifar10 = pytest.mark.skipif(
    not CIFAR10_NPZ.is_file(), reason=SKIP_REASON
)
needs_news = pytest.mark.skipif(not NEWS_PKZ.is_file(), reason=SKIP_REASON)


def class_counts(y, num_classes):
    return np.bincount(y, minlength=num_classes)


def assert_stratified(y_part, y_full, num_classes):
    """Each class's count in `y_part` is its share of `y_full`, within 1."""
    expected = class_counts(y_full, num_classes) * len(y_part) / len(y_full)
    np.testing.assert_array_less(
        np.abs(class_counts(y_part, num_classes) - expected), 1.0 + 1e-9
    )


def assert_same_dataset(a, b):
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.fixture
def no_env_dir(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def write_idx_gz(path, array, dims=None, magic=None):
    """Writes `array` as a uint8 idx `.gz`; `dims`/`magic` may lie."""
    dims = array.shape if dims is None else dims
    magic = bytes([0, 0, 0x08, len(dims)]) if magic is None else magic
    header = magic + struct.pack(f">{len(dims)}I", *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_fashion(folder, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)


def write_fake_cifar_npz(path, n_train=40, n_test=20, num_classes=10):
    rng = np.random.default_rng(0)
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=(np.arange(n_train) % num_classes).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        y_test=(np.arange(n_test) % num_classes).astype(np.uint8),
    )


# === Real data: Fashion-MNIST ===


@needs_fashion
def test_fashion_mnist_official_split():
    ds = data.fashion_mnist(data_dir=MIRROR, validation_size=0)
    assert ds.x_train.shape == (60000, 784)
    assert ds.x_test.shape == (10000, 784)
    assert ds.x_val.shape == (0, 784) and ds.y_val.shape == (0,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    np.testing.assert_array_equal(class_counts(ds.y_train, 10), [6000] * 10)
    np.testing.assert_array_equal(class_counts(ds.y_test, 10), [1000] * 10)
    assert ds.num_classes == 10 and len(ds.class_names) == 10
    assert ds.input_shape == (784,)


@needs_fashion
def test_fashion_mnist_validation_is_stratified_and_disjoint():
    full = data.fashion_mnist(data_dir=MIRROR, validation_size=0)
    ds = data.fashion_mnist(data_dir=MIRROR, validation_size=0.1)
    assert len(ds.x_train) + len(ds.x_val) == 60000
    np.testing.assert_array_equal(class_counts(ds.y_val, 10), [600] * 10)
    np.testing.assert_array_equal(class_counts(ds.y_train, 10), [5400] * 10)
    # Train and validation partition the official training set.
    def row_digests(x):
        return sorted(hash(row.tobytes()) for row in (x * 255).astype(np.uint8))

    split_rows = row_digests(ds.x_train) + row_digests(ds.x_val)
    assert sorted(split_rows) == row_digests(full.x_train)
    np.testing.assert_array_equal(ds.x_test, full.x_test)


@needs_fashion
def test_fashion_mnist_unflattened_and_env_var(monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(MIRROR))
    ds = data.load("fashion-mnist", subset=0.05, flatten=False)
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.input_shape == (28, 28, 1)


@needs_fashion
@pytest.mark.parametrize(
    "subset, n_train_val, n_test", [(0.1, 6000, 1000), (1000, 1000, 167)]
)
def test_fashion_mnist_subset_is_stratified(subset, n_train_val, n_test):
    ds = data.fashion_mnist(data_dir=MIRROR, subset=subset, validation_size=0.1)
    assert len(ds.x_train) + len(ds.x_val) == n_train_val
    assert len(ds.x_test) == n_test
    assert len(ds.x_val) == int(np.ceil(0.1 * n_train_val))
    balanced = np.full(10, 0.1)
    for y in (ds.y_train, ds.y_val, ds.y_test):
        assert_stratified(y, np.repeat(np.arange(10), 100), 10)
        assert np.allclose(class_counts(y, 10) / len(y), balanced, atol=0.01)


@needs_fashion
def test_fashion_mnist_seed_determinism():
    a = data.fashion_mnist(data_dir=MIRROR, subset=2000, seed=1)
    b = data.fashion_mnist(data_dir=MIRROR, subset=2000, seed=1)
    c = data.fashion_mnist(data_dir=MIRROR, subset=2000, seed=2)
    assert_same_dataset(a, b)
    assert not np.array_equal(a.x_train, c.x_train)
    assert not np.array_equal(a.x_val, c.x_val)


@needs_fashion
def test_cached_arrays_cannot_be_corrupted_by_callers():
    a = data.fashion_mnist(data_dir=MIRROR, subset=500)
    a.x_train[:] = -1.0
    a.y_train[:] = -1
    b = data.fashion_mnist(data_dir=MIRROR, subset=500)
    assert b.x_train.min() >= 0.0 and b.y_train.min() >= 0


# === Real data: CIFAR-10 ===


@pytest.fixture(scope="module")
def cifar10_full():
    return data.cifar10(data_dir=MIRROR, validation_size=0.1)


@needs_cifar10
def test_cifar10_official_split(cifar10_full):
    ds = cifar10_full
    assert ds.x_train.shape == (45000, 32, 32, 3)
    assert ds.x_val.shape == (5000, 32, 32, 3)
    assert ds.x_test.shape == (10000, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert 0.0 <= ds.x_test.min() and ds.x_test.max() <= 1.0
    train_counts = class_counts(ds.y_train, 10) + class_counts(ds.y_val, 10)
    np.testing.assert_array_equal(train_counts, [5000] * 10)
    np.testing.assert_array_equal(class_counts(ds.y_val, 10), [500] * 10)
    np.testing.assert_array_equal(class_counts(ds.y_test, 10), [1000] * 10)
    assert ds.class_names[0] == "airplane" and ds.input_shape == (32, 32, 3)
    # Per-channel means of the official training set (published values).
    full = np.concatenate([ds.x_train, ds.x_val])
    np.testing.assert_allclose(
        full.mean(axis=(0, 1, 2), dtype=np.float64),
        [0.4914, 0.4822, 0.4465],
        atol=1e-3,
    )


@needs_cifar10
def test_cifar10_subset_and_seed():
    a = data.load("cifar10", data_dir=MIRROR, subset=0.02, seed=3)
    b = data.load("cifar10", data_dir=MIRROR, subset=0.02, seed=3)
    c = data.load("cifar10", data_dir=MIRROR, subset=0.02, seed=4)
    assert len(a.x_train) + len(a.x_val) == 1000 and len(a.x_test) == 200
    np.testing.assert_array_equal(class_counts(a.y_test, 10), [20] * 10)
    np.testing.assert_array_equal(class_counts(a.y_val, 10), [10] * 10)
    assert_same_dataset(a, b)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(
        a.x_train, c.x_train
    )


# === Real data: 20 Newsgroups ===


@pytest.fixture(scope="module")
def news_full():
    return data.newsgroups20(data_dir=MIRROR, validation_size=0)


@needs_news
def test_newsgroups20_official_split(news_full):
    ds = news_full
    assert ds.x_train.shape == (11314, 10000)
    assert ds.x_test.shape == (7532, 10000)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.num_classes == 20 and len(set(ds.y_test.tolist())) == 20
    assert ds.class_names[0] == "alt.atheism"
    # TF-IDF rows are L2-normalised.
    norms = np.linalg.norm(ds.x_test[:200], axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)


@needs_news
def test_newsgroups20_tfidf_is_fitted_on_training_split_only():
    ds = data.newsgroups20(
        data_dir=MIRROR, subset=200, validation_size=0.5, max_features=10**6
    )
    assert len(ds.x_train) == 100 and len(ds.x_val) == 100
    assert len(ds.x_test) == round(200 * 7532 / 11314)
    # Every vocabulary term occurs in the training posts; a vectorizer also
    # fitted on validation or test posts would have all-zero train columns.
    assert (ds.x_train != 0).any(axis=0).all()
    assert not (ds.x_val != 0).any(axis=0).all()
    assert_stratified(ds.y_val, np.concatenate([ds.y_train, ds.y_val]), 20)


@needs_news
def test_newsgroups20_bad_arguments():
    with pytest.raises(ValueError, match="max_features"):
        data.newsgroups20(data_dir=MIRROR, max_features=0)
    with pytest.raises(ValueError, match="remove"):
        data.newsgroups20(data_dir=MIRROR, remove=("signatures",))


# === Missing and corrupt files ===


@pytest.mark.parametrize(
    "name, filename",
    [
        ("fashion_mnist", "train-images-idx3-ubyte.gz"),
        ("cifar10", "cifar10.npz"),
        ("cifar100", "cifar100.npz"),
        ("newsgroups20", "20news-bydate_py3.pkz"),
    ],
)
def test_missing_files_raise_one_clear_error(
    tmp_path, no_env_dir, name, filename
):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, data_dir=tmp_path)
    message = str(info.value)
    assert name in message and filename in message
    assert "SUPERNET_DATA_DIR" in message and str(tmp_path) in message


def test_missing_files_via_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SUPERNET_DATA_DIR") as info:
        data.fashion_mnist()
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.resolve_data_dir() is None
    monkeypatch.setenv(data.DATA_DIR_ENV, "")
    assert data.resolve_data_dir() is None
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.resolve_data_dir() == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data.resolve_data_dir(str(tmp_path)) == tmp_path


def test_fake_fashion_files_round_trip(tmp_path, no_env_dir):
    write_fake_fashion(tmp_path / "fashion-mnist")
    ds = data.fashion_mnist(data_dir=tmp_path, validation_size=10)
    assert ds.x_train.shape == (30, 784) and ds.x_val.shape == (10, 784)
    assert ds.x_test.shape == (20, 784)
    np.testing.assert_array_equal(class_counts(ds.y_val, 10), [1] * 10)


@needs_fashion
def test_truncated_gzip_raises_value_error_naming_file(tmp_path, no_env_dir):
    folder = tmp_path / "fashion-mnist"
    shutil.copytree(FASHION_DIR, folder)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes((FASHION_DIR / target.name).read_bytes()[:1000])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        data.fashion_mnist(data_dir=tmp_path)


@pytest.mark.parametrize(
    "dims, magic, match",
    [
        ((21,), None, "declares shape"),  # header promises more than stored
        ((19,), None, "declares shape"),  # trailing bytes beyond the header
        ((20,), b"\x00\x00\x42\x01", "magic number"),
        ((20,), b"\x08\x03\x00\x00", "magic number"),
    ],
)
def test_idx_header_mismatch_raises(tmp_path, no_env_dir, dims, magic, match):
    write_fake_fashion(tmp_path / "fashion-mnist")
    path = tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx_gz(path, np.arange(20) % 10, dims=dims, magic=magic)
    with pytest.raises(ValueError, match=match) as info:
        data.fashion_mnist(data_dir=tmp_path)
    assert path.name in str(info.value)


def test_idx_label_count_mismatch_raises(tmp_path, no_env_dir):
    write_fake_fashion(tmp_path / "fashion-mnist")
    path = tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx_gz(path, np.arange(15) % 10)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        data.fashion_mnist(data_dir=tmp_path)


def test_not_gzip_raises(tmp_path, no_env_dir):
    write_fake_fashion(tmp_path / "fashion-mnist")
    path = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.fashion_mnist(data_dir=tmp_path)


@needs_cifar10
def test_truncated_real_cifar10_npz_raises(tmp_path, no_env_dir):
    with open(CIFAR10_NPZ, "rb") as f:
        (tmp_path / "cifar10.npz").write_bytes(f.read(1 << 20))
    with pytest.raises(ValueError, match="cifar10.npz"):
        data.cifar10(data_dir=tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "flip_middle"])
def test_corrupt_npz_raises(tmp_path, no_env_dir, damage):
    path = tmp_path / "cifar10.npz"
    write_fake_cifar_npz(path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 200]
    else:
        start = len(raw) // 3
        raw[start : start + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="cifar10.npz"):
        data.cifar10(data_dir=tmp_path)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x_train": np.zeros((4, 32, 32, 3), np.uint8)}, "lacks the keys"),
        (
            {
                "x_train": np.zeros((4, 28, 28), np.uint8),
                "y_train": np.zeros(4, np.uint8),
                "x_test": np.zeros((2, 32, 32, 3), np.uint8),
                "y_test": np.zeros(2, np.uint8),
            },
            "shape",
        ),
        (
            {
                "x_train": np.zeros((4, 32, 32, 3), np.uint8),
                "y_train": np.zeros(3, np.uint8),
                "x_test": np.zeros((2, 32, 32, 3), np.uint8),
                "y_test": np.zeros(2, np.uint8),
            },
            "one label per image",
        ),
    ],
)
def test_malformed_npz_raises(tmp_path, no_env_dir, arrays, match):
    np.savez(tmp_path / "cifar10.npz", **arrays)
    with pytest.raises(ValueError, match=match) as info:
        data.cifar10(data_dir=tmp_path)
    assert "cifar10.npz" in str(info.value)


def test_corrupt_newsgroups_cache_raises(tmp_path, no_env_dir):
    (tmp_path / "20news").mkdir()
    (tmp_path / "20news" / "20news-bydate_py3.pkz").write_bytes(b"garbage" * 50)
    with pytest.raises(ValueError, match="20news-bydate_py3.pkz"):
        data.newsgroups20(data_dir=tmp_path)


# === CIFAR-100 (not mirrored: generated files in the official layouts) ===


def test_cifar100_from_npz(tmp_path, no_env_dir):
    write_fake_cifar_npz(tmp_path / "cifar100.npz", 200, 100, num_classes=100)
    ds = data.cifar100(data_dir=tmp_path, validation_size=0)
    assert ds.num_classes == 100 and len(ds.class_names) == 100
    assert ds.x_train.shape == (200, 32, 32, 3)
    assert ds.x_test.shape == (100, 32, 32, 3)
    with pytest.raises(ValueError, match="y_train_coarse"):
        data.cifar100(data_dir=tmp_path, label_mode="coarse")


def test_cifar100_from_official_pickles(tmp_path, no_env_dir):
    import pickle

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for split, n in (("train", 200), ("test", 100)):
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        images[split] = rows
        batch = {
            b"data": rows,
            b"fine_labels": list(np.arange(n) % 100),
            b"coarse_labels": list(np.arange(n) % 20),
        }
        with open(folder / split, "wb") as f:
            pickle.dump(batch, f)
    ds = data.cifar100(data_dir=tmp_path, validation_size=0)
    # Official rows are channel-major (1024 red, 1024 green, 1024 blue).
    first = images["train"][0]
    pixel = first[[1, 1025, 2049]] / 255
    np.testing.assert_allclose(ds.x_train[0, 0, 1], pixel)
    assert ds.num_classes == 100
    coarse = data.cifar100(
        data_dir=tmp_path, validation_size=0, label_mode="coarse"
    )
    assert coarse.num_classes == 20 and coarse.y_train.max() == 19


def test_cifar100_class_names_are_the_official_sorted_lists():
    for names, n in (
        (data.CIFAR100_FINE_CLASS_NAMES, 100),
        (data.CIFAR100_COARSE_CLASS_NAMES, 20),
    ):
        assert len(names) == n == len(set(names))
        assert list(names) == sorted(names)


# === Bundled and generated data ===


def test_digits():
    ds = data.digits()
    assert ds.x_train.shape[1:] == (64,) and ds.input_shape == (64,)
    assert len(ds.x_train) + len(ds.x_val) + len(ds.x_test) == 1797
    assert len(ds.x_test) == 450
    assert ds.num_classes == 10
    assert ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert_stratified(ds.y_val, np.concatenate([ds.y_train, ds.y_val]), 10)
    assert "digits: train 1212, val 135, test 450" in ds.summary()


@pytest.mark.parametrize("validation_size", [0, 0.2, 50])
def test_digits_validation_sizes(validation_size):
    ds = data.digits(validation_size=validation_size)
    n = len(ds.x_train) + len(ds.x_val)
    expected = (
        validation_size
        if isinstance(validation_size, int)
        else int(np.ceil(validation_size * n))
    )
    assert len(ds.x_val) == expected and ds.x_val.shape[1:] == (64,)


def test_digits_seed_determinism():
    assert_same_dataset(data.digits(seed=5), data.digits(seed=5))
    a, b = data.digits(seed=5), data.digits(seed=6)
    assert not np.array_equal(a.y_val, b.y_val)


def test_synthetic_shapes_and_range():
    ds = data.synthetic(num_classes=5, input_shape=(8, 8, 1), num_train=100)
    assert ds.x_train.shape == (90, 8, 8, 1) and ds.x_val.shape == (10, 8, 8, 1)
    assert ds.x_test.shape == (128, 8, 8, 1) and ds.input_shape == (8, 8, 1)
    assert ds.num_classes == 5 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    np.testing.assert_array_equal(class_counts(ds.y_val, 5), [2] * 5)
    again = data.synthetic(num_classes=5, input_shape=(8, 8, 1), num_train=100)
    assert_same_dataset(ds, again)


def test_synthetic_is_learnable():
    from sklearn.linear_model import LogisticRegression

    ds = data.synthetic(
        num_classes=10, input_shape=(16,), num_train=500, num_test=500
    )
    clf = LogisticRegression(max_iter=500).fit(ds.x_train, ds.y_train)
    assert clf.score(ds.x_test, ds.y_test) > 0.8  # chance is 0.1


def test_synthetic_through_load_with_subset():
    ds = data.load("synthetic", num_classes=100, subset=300, validation_size=0)
    assert ds.num_classes == 100 and len(ds.x_train) == 300
    assert len(ds.x_test) == 75  # 300 * 128 / 512


# === Argument validation ===


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_size": 1.5}, "validation_size=1.5"),
        ({"validation_size": 1.0}, "validation_size"),
        ({"validation_size": -1}, "validation_size=-1"),
        ({"validation_size": True}, "validation_size"),
        ({"validation_size": "0.1"}, "validation_size"),
        ({"validation_size": 2000}, "leaves no training examples"),
        ({"subset": 0}, "subset=0"),
        ({"subset": 0.0}, "subset"),
        ({"subset": 1.5}, "subset"),
        ({"subset": -3}, "subset"),
        ({"subset": 10**6}, "at most the number of training examples"),
        ({"subset": 1}, "at least 2 classes"),
        ({"test_size": 0}, "test_size"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load("digits", **kwargs)


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ValueError, match="fashion_mnist") as info:
        data.load("imagenet")
    assert "'imagenet'" in str(info.value) and "tfds:NAME" in str(info.value)


def test_bad_label_mode_and_synthetic_args():
    with pytest.raises(ValueError, match="label_mode"):
        data.cifar100(label_mode="medium")
    with pytest.raises(ValueError, match="num_classes"):
        data.synthetic(num_classes=1)
    with pytest.raises(ValueError, match="num_train"):
        data.synthetic(num_classes=10, num_train=5)


def test_dataset_checks_lengths_and_repr():
    x, y = np.zeros((3, 2), np.float32), np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="same length"):
        data.Dataset("t", x, y[:2], x, y, x, y, 2, (2,), ("a", "b"))
    ds = data.Dataset("t", x, y, x[:0], y[:0], x, y, 2, (2,), ("a", "b"))
    assert repr(ds) == (
        "<Dataset t: train 3, val 0, test 3, input_shape (2,), 2 classes>"
    )


def test_public_api():
    assert set(data.DATASETS) == {
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "newsgroups20",
        "digits",
        "synthetic",
    }
    for name in data.__all__:
        assert hasattr(data, name)


# === TFDS adapter (offline, via tfds.testing.mock_data) ===


def test_tfds_adapter_with_mock_data(no_env_dir):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=60):
        ds = data.load("tfds:mnist", validation_size=0.2, seed=0)
    assert ds.name == "tfds:mnist"
    assert ds.x_train.shape == (48, 28, 28, 1)
    assert ds.x_val.shape == (12, 28, 28, 1)
    assert ds.x_test.shape == (60, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.num_classes == 10 and len(ds.class_names) == 10


def test_tfds_unprepared_data_dir_raises(tmp_path, no_env_dir):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DatasetNotFoundError, match="SUPERNET_DATA_DIR") as info:
        data.tfds_dataset("mnist", data_dir=tmp_path)
    assert "tfds:mnist" in str(info.value) and str(tmp_path) in str(info.value)


def test_supervised_to_numpy_on_in_memory_dataset():
    tf = pytest.importorskip("tensorflow")
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2, 1)
    labels = np.array([0, 1, 2, 0, 1, 2])
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    x, y = data._supervised_to_numpy(ds)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64


def test_empty_dataset_raises(tmp_path, no_env_dir):
    write_fake_fashion(tmp_path / "fashion-mnist", n_train=0, n_test=5)
    with pytest.raises(ValueError, match="empty"):
        data.fashion_mnist(data_dir=tmp_path)


# === TFDS adapter on a dataset prepared locally (offline) ===
#
# `mock_data` above replaces `download_and_prepare` and `as_dataset`; these
# tests run the real ones: a tiny builder writes TFRecords into a temporary
# `data_dir` and the loader reads them back, as from an offline mirror.

TINY_TFDS_NAME = "supernet_tiny_images"
TINY_TFDS_CLASSES = ("circle", "square", "triangle")
TINY_TFDS_SIZES = {"train": 60, "test": 30}


def tiny_pixel(label):
    """Pixel (0, 0) of every tiny image encodes its label."""
    return 100 * label


def define_tiny_tfds_builder(tfds):
    """Defines, and thereby registers with TFDS, a tiny image builder."""

    class SupernetTinyImages(tfds.core.GeneratorBasedBuilder):
        """8x8 grey images in three balanced classes."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(8, 8, 1)),
                        "label": tfds.features.ClassLabel(
                            names=list(TINY_TFDS_CLASSES)
                        ),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {
                split: self._generate_examples(n, seed)
                for seed, (split, n) in enumerate(TINY_TFDS_SIZES.items())
            }

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                label = i % len(TINY_TFDS_CLASSES)
                image = rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8)
                image[0, 0, 0] = tiny_pixel(label)
                image[-1, -1, 0] = 255
                yield i, {"image": image, "label": label}

    return SupernetTinyImages


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
    """A TFDS `data_dir` holding the tiny dataset, prepared for real."""
    import tensorflow_datasets as tfds

    # Module scope: TFDS refuses to register the same name twice.
    builder_cls = define_tiny_tfds_builder(tfds)
    data_dir = tmp_path_factory.mktemp("tfds")
    # No GCS look-up: the test must not reach the network.
    config = tfds.download.DownloadConfig(try_download_gcs=False)
    builder_cls(data_dir=str(data_dir)).download_and_prepare(
        download_config=config
    )
    return data_dir


def assert_tiny_tfds_split(x, y):
    assert x.shape[1:] == (8, 8, 1)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() == 1.0
    # The (input, label) pairing survives loading, scaling and splitting.
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255.0, tiny_pixel(y), atol=1e-4)


def test_tfds_load_from_prepared_data_dir(tiny_tfds_dir, no_env_dir):
    ds = data.load(
        f"tfds:{TINY_TFDS_NAME}",
        data_dir=tiny_tfds_dir,
        validation_size=0.2,
        seed=0,
    )
    assert ds.name == f"tfds:{TINY_TFDS_NAME}"
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (48, 12, 30)
    assert ds.input_shape == (8, 8, 1)
    assert ds.num_classes == 3 and ds.class_names == TINY_TFDS_CLASSES
    for x, y in [
        (ds.x_train, ds.y_train),
        (ds.x_val, ds.y_val),
        (ds.x_test, ds.y_test),
    ]:
        assert_tiny_tfds_split(x, y)
    np.testing.assert_array_equal(class_counts(ds.y_val, 3), [4, 4, 4])
    np.testing.assert_array_equal(class_counts(ds.y_test, 3), [10, 10, 10])


def test_tfds_data_dir_from_env_var_with_subset(tiny_tfds_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tiny_tfds_dir))
    ds = data.tfds_dataset(TINY_TFDS_NAME, subset=30, validation_size=0)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (30, 0, 15)
    assert_tiny_tfds_split(ds.x_train, ds.y_train)
    assert_tiny_tfds_split(ds.x_test, ds.y_test)
    np.testing.assert_array_equal(class_counts(ds.y_train, 3), [10, 10, 10])


def test_tfds_catalogue_builder_finds_its_code():
    """`download_and_prepare` of a catalogue dataset such as MNIST reads
    `code_path`, which imports `importlib_resources`: a dependency that
    tensorflow-datasets uses but declares only for Python < 3.9."""
    import tensorflow_datasets as tfds

    assert tfds.builder_cls("mnist").code_path.exists()


# === Held-out split for stacking ===


def indexed_dataset(n=200, num_classes=4, seed=0):
    """A `Dataset` whose training input `i` is `[i]`, with unbalanced classes."""
    rng = np.random.default_rng(seed)
    y = rng.choice(num_classes, size=n, p=[0.1, 0.2, 0.3, 0.4]).astype(np.int64)
    x = np.arange(n, dtype=np.float32)[:, None]
    x_other, y_other = x[:10] + 1000, y[:10]
    return data.Dataset(
        "indexed", x, y, x_other, y_other, x_other + 1000, y_other,
        num_classes, (1,), tuple(f"c{i}" for i in range(num_classes)),
    )  # fmt: skip


@pytest.mark.parametrize("holdout_size, n_holdout", [(0.1, 20), (0.25, 50), (0.333, 67), (37, 37)])
def test_holdout_split_is_stratified_disjoint_and_covers_training_set(holdout_size, n_holdout):
    ds = indexed_dataset()
    members_ds, (x_head, y_head) = data.holdout_split(ds, holdout_size, seed=3)
    assert isinstance(members_ds, data.Dataset) and members_ds.name == ds.name
    ids_members = members_ds.x_train[:, 0].astype(int)
    ids_head = x_head[:, 0].astype(int)
    assert len(ids_head) == n_holdout and len(ids_members) == 200 - n_holdout
    assert not set(ids_members) & set(ids_head)
    np.testing.assert_array_equal(np.sort(np.concatenate([ids_members, ids_head])), np.arange(200))
    # Inputs keep their labels, and both parts keep the original order.
    np.testing.assert_array_equal(members_ds.y_train, ds.y_train[ids_members])
    np.testing.assert_array_equal(y_head, ds.y_train[ids_head])
    assert np.all(np.diff(ids_members) > 0) and np.all(np.diff(ids_head) > 0)
    assert_stratified(y_head, ds.y_train, 4)
    assert_stratified(members_ds.y_train, ds.y_train, 4)
    # Validation and test splits are untouched.
    for field in ("x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(members_ds, field), getattr(ds, field))
    assert members_ds.num_classes == 4 and members_ds.input_shape == (1,)


def test_holdout_split_is_deterministic_per_seed():
    ds = indexed_dataset()
    first = data.holdout_split(ds, 0.2, seed=1)
    again = data.holdout_split(ds, 0.2, seed=1)
    other = data.holdout_split(ds, 0.2, seed=2)
    assert_same_dataset(first[0], again[0])
    np.testing.assert_array_equal(first[1][0], again[1][0])
    np.testing.assert_array_equal(first[1][1], again[1][1])
    assert not np.array_equal(first[1][0], other[1][0])


def test_holdout_split_on_a_loaded_dataset():
    ds = data.digits(validation_size=0.1)
    members_ds, (x_head, y_head) = data.holdout_split(ds, 0.1)
    assert len(x_head) == int(np.ceil(0.1 * len(ds.x_train)))
    assert x_head.shape[1:] == ds.input_shape and x_head.dtype == np.float32
    assert_stratified(y_head, ds.y_train, 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"holdout_size": 0}, r"Argument `holdout_size` must be a float in \(0, 1\) or a positive int. Received: holdout_size=0"),
        ({"holdout_size": 0.0}, "holdout_size=0.0"),
        ({"holdout_size": 1.0}, "holdout_size=1.0"),
        ({"holdout_size": -5}, "holdout_size=-5"),
        ({"holdout_size": True}, "holdout_size=True"),
        ({"holdout_size": "0.1"}, "holdout_size='0.1'"),
        ({"holdout_size": 200}, r"leaves no training examples for the members: 200 of 200"),
        ({"holdout_size": 1}, r"at least 2 classes in both parts.*held-out part holds 1 example"),
        ({"holdout_size": 0.1, "seed": 0.5}, r"Argument `seed` must be an int. Received: seed=0.5"),
    ],
)
def test_holdout_split_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.holdout_split(indexed_dataset(), **kwargs)


def test_holdout_split_refuses_what_is_not_a_dataset():
    with pytest.raises(ValueError, match=r"Argument `ds` must be a supernet.data.Dataset. Received: ds of type tuple"):
        data.holdout_split((np.zeros((4, 1)), np.zeros(4)), 0.5)
