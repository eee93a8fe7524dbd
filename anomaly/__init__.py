"""anomaly: a real-time anomaly detector for metric streams (a calibrated hybrid ensemble).

Public names only, imported on first use: ``stream.py`` starts without loading the
training stack (statsmodels, scikit-learn), and TensorFlow loads only to train.
"""

import importlib

_PUBLIC = {
    "Config": "config", "load_config": "config",
    "Decisions": "ensemble", "Ensemble": "ensemble",
    "load_run": "runs", "write_run": "runs",
    "Point": "simulate", "Series": "simulate", "Simulator": "simulate", "simulate": "simulate",
    "train": "training",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
