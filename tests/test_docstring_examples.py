"""The `Example:` sections of the package's docstrings run as written.

Lines marked `# doctest: +SKIP` need files or downloads that are not here
(a user's checkpoint, a SavedModel path); every other example line runs and
its printed output must match.
"""

import doctest
import importlib
import pkgutil

import pytest

import mmtl_tf

MODULES = sorted(m.name for m in pkgutil.walk_packages(mmtl_tf.__path__, "mmtl_tf.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_examples_are_found():
    # The test above would pass on modules without examples; make sure the
    # finder sees the package's (more than a hundred runnable ones).
    runnable = 0
    for name in MODULES:
        for test in doctest.DocTestFinder().find(importlib.import_module(name), name):
            runnable += sum(1 for ex in test.examples if not ex.options.get(doctest.SKIP))
    assert runnable > 100, runnable
