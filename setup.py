"""setuptools shim: all metadata lives in setup.cfg."""

import sys

from setuptools import setup

# setup.cfg's python_requires, said up front: an editable install
# (`pip install -e .`) with pip 23 does not check it and fails later on a
# dependency without wheels for this Python (numpy 2.4, keras 3.15, ...).
if not (3, 11) <= sys.version_info[:2] < (3, 14):
    sys.exit(f"mmtl_tf needs Python 3.11, 3.12 or 3.13 (its pinned dependencies have no "
             f"releases for others); this is Python {sys.version.split()[0]}.")

setup()
