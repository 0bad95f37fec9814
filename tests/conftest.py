"""Shared pytest setup: quiet TensorFlow, restore runtime settings after each test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _restore_runtime():
    from mmtl_tf import runtime

    before = runtime.current()
    yield
    runtime.configure(before.precision, before.jit_compile, before.strategy)


@pytest.fixture
def repo_root():
    return REPO
