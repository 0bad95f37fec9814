"""`python -m mmtl_tf` runs the `mmtl-tf` command line."""

import sys

from mmtl_tf.cli import main

sys.exit(main())
