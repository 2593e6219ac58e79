"""Names every docstring example may use; examples that read the data mirror are slow and need it."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest

# Docstring examples that read a dataset from the offline mirror, and the file each needs.
_MIRROR_EXAMPLES = {
    "supernet.data.fashion_mnist": "fashion-mnist/train-images-idx3-ubyte.gz",
    "supernet.data.cifar10": "cifar10.npz",
    "supernet.data.newsgroups20": "20news/20news-bydate_py3.pkz",
}


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(np=np, keras=keras)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    root = os.environ.get("SUPERNET_DATA_DIR")
    for item in items:
        needed = _MIRROR_EXAMPLES.get(item.name)
        if needed is None:
            continue
        item.add_marker(pytest.mark.slow)
        if not (root and (Path(root) / needed).is_file()):
            item.add_marker(pytest.mark.skip(reason=f"needs the offline data mirror: SUPERNET_DATA_DIR with {needed}"))
