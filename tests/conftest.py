"""Shared pytest setup: quiet TensorFlow, restore runtime settings after each test."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(folder, name):
    """The script `REPO/folder/name.py` (bench/, data_prep/) as a fresh module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The longest tests (60-100 s each on a 2-core machine) go first. In
# collection order they came last, and with `pytest -n 2` one of them still
# running at the end kept the other worker idle for a minute or more. xdist
# hands each worker a first run of consecutive tests, so all of these start
# on the first worker while the other takes the short ones; either way the
# run now ends on short tests. The rest keep their order.
_LONGEST_FIRST = (
    "tests/test_cli.py::test_quickstart_prints_one_table",
    "tests/test_notebooks.py::test_notebook_runs_in_small_mode[04_",
    "tests/test_notebooks.py::test_notebook_runs_in_small_mode[03_",
    "tests/test_notebooks.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return next((i for i, prefix in enumerate(_LONGEST_FIRST)
                     if item.nodeid.startswith(prefix)), len(_LONGEST_FIRST))

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _restore_runtime():
    from mmtl_tf import runtime

    before = runtime.current()
    yield
    runtime.configure(before.precision, before.jit_compile, before.strategy)


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    # `mmtl-tf train --deterministic` run in-process (tests of the CLI) turns
    # on TensorFlow's op determinism for the rest of the process, and with it
    # Keras compiles every later model without XLA: a test of jit_compile
    # that ran after one of them on the same xdist worker failed. Switched
    # off again after the test with TensorFlow's private test switch.
    def enabled():  # without importing TensorFlow into a test that does not
        if "tensorflow" not in sys.modules:
            return False
        from tensorflow.python.framework import config as tf_config

        return tf_config.is_op_determinism_enabled()

    before = enabled()
    yield
    if not before and enabled():
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()


@pytest.fixture
def repo_root():
    return REPO
