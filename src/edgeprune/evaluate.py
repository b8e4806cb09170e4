"""Command line: ``python -m edgeprune.evaluate`` (see :mod:`edgeprune.measurement.evaluate`)."""

import sys

from edgeprune.measurement.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
