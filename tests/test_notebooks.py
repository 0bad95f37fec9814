"""Executes every tutorial notebook in its small mode."""

import glob
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MMTL_TF_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    # Every code cell ran.
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_quiets_tensorflow_before_it_loads(path):
    # A student saw TensorFlow's harmless C++ error lines in red ("failed call
    # to cuInit" without a GPU, oneDNN's AVX-512 fallback); the test kernel
    # does not show them (its C++ output is not a cell's), so this checks
    # that the first code cell sets the level before anything imports
    # TensorFlow.
    nb = nbformat.read(path, as_version=4)
    lines = next(c.source for c in nb.cells if c.cell_type == "code").splitlines()
    sets = [i for i, line in enumerate(lines)
            if line.startswith('os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")')]
    imports = [i for i, line in enumerate(lines)
               if line.split()[:2] in (["import", "keras"], ["import", "tensorflow"],
                                       ["import", "mmtl_tf"])
               or line.startswith(("from keras", "from tensorflow", "from mmtl_tf"))]
    assert sets and imports and sets[0] < min(imports), lines[:12]


GENERATORS = sorted(glob.glob(os.path.join(REPO, "notebooks", "*_[0-9][0-9]_*.py")))


def _generator(path, *args):
    return subprocess.run([sys.executable, path, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_every_generated_notebook_has_its_generator():
    assert len(GENERATORS) == 4
    made = {os.path.basename(p).split("_", 1)[1][:2] for p in GENERATORS}
    assert made == {"02", "03", "04", "05"}


@pytest.mark.parametrize("path", GENERATORS, ids=[os.path.basename(p) for p in GENERATORS])
def test_committed_notebook_is_what_its_generator_writes(path, tmp_path):
    # The .ipynb is generated: an edit made in one and not the other shows here.
    result = _generator(path, "--check")
    assert result.returncode == 0, result.stderr
    assert "identical" in result.stdout
    # --help writes nothing (it used to regenerate the notebook with new cell ids).
    before = {p: os.path.getmtime(p) for p in NOTEBOOKS}
    assert _generator(path, "--help").returncode == 0
    assert {p: os.path.getmtime(p) for p in NOTEBOOKS} == before
    # --out writes elsewhere; a changed notebook fails --check with a message.
    out = tmp_path / "nb.ipynb"
    assert _generator(path, "--out", str(out)).returncode == 0
    nb = nbformat.read(str(out), as_version=4)
    nb.cells[-1].source += "\nprint('edited')"
    nbformat.write(nb, str(out))
    result = _generator(path, "--out", str(out), "--check")
    assert result.returncode == 1 and "differs" in result.stderr
