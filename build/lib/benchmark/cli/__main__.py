"""`python -m benchmark.cli`: the `xdkd` command."""

import sys

from benchmark.cli import main

sys.exit(main())
