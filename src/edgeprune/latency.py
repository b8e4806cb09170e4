"""Command line: ``python -m edgeprune.latency compare ...`` (see
:mod:`edgeprune.measurement.compare`)."""

import sys

from edgeprune.measurement.latency import main

if __name__ == "__main__":
    sys.exit(main())
