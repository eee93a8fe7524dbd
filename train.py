"""Train the anomaly-detection ensemble: ``python train.py --help``."""

import sys

from anomaly.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
