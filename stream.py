"""Stream a metric and flag anomalies live: ``python stream.py --help``."""

import sys

from anomaly.cli import stream_main

if __name__ == "__main__":
    sys.exit(stream_main())
