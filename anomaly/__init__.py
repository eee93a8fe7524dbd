"""anomaly: a real-time anomaly detector for metric streams (a calibrated hybrid ensemble).

Public names only; TensorFlow loads when an autoencoder is first used.
"""

from .config import Config, load_config
from .ensemble import Decisions, Ensemble
from .runs import load_run, write_run
from .simulate import Point, Series, Simulator, simulate
from .training import train

__all__ = ["Config", "Decisions", "Ensemble", "Point", "Series", "Simulator", "load_config",
           "load_run", "simulate", "train", "write_run"]
__version__ = "0.1.0"
