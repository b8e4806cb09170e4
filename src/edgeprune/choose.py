"""Command line: ``python -m edgeprune.choose`` (see :mod:`edgeprune.reporting.pareto`)."""

import sys

from edgeprune.reporting.pareto import main

if __name__ == "__main__":
    sys.exit(main())
