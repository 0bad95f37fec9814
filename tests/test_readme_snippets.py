"""The README's self-contained Python snippets run as written (slow: each trains
a model; run with `pytest -m slow tests/test_readme_snippets.py`).

A snippet counts as self-contained when it starts with an import and opens no
file of the user's (a SavedModel folder, an image). Epoch counts are cut to 1
so that the run checks the code, not the results the README reports.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _snippets():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        code = match.group(1)
        line = text.count("\n", 0, match.start()) + 2
        if code.startswith("import") and "saved_model.load" not in code:
            blocks.append(pytest.param(code, id=f"README.md:{line}"))
    return blocks


SNIPPETS = _snippets()


def test_the_readme_has_runnable_snippets():
    assert len(SNIPPETS) >= 5, SNIPPETS


@pytest.mark.slow
@pytest.mark.parametrize("code", SNIPPETS)
def test_readme_snippet_runs(code, tmp_path):
    code = re.sub(r"\b(epochs|head_epochs|fine_tune_epochs)=\d+", r"\1=1", code)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
