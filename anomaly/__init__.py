"""anomaly: a real-time anomaly detector for metric streams (a calibrated hybrid ensemble).

Public names only, imported on first use: ``stream.py`` starts without loading the
training stack (statsmodels, scikit-learn), and TensorFlow loads only to train.

The package is grouped by stage: :mod:`anomaly.io` (input and output: points, decisions,
incidents, alerts), :mod:`anomaly.model` (windows, the detectors, calibration, the ensemble,
training, saved runs), :mod:`anomaly.online` (the online loop), :mod:`anomaly.evaluation`, and at the top the
commands (:mod:`anomaly.cli`, ``python -m anomaly.evaluate``, ``anomaly.spark``,
``anomaly.client``, ``anomaly.feedback``, ``anomaly.dashboard``) with what every stage
uses (config, errors, progress, the simulator). A module's earlier flat name (``anomaly.runner``) still imports:
it is the same module object as its new home (``anomaly.online.runner``).
"""

import importlib
import importlib.abc
import importlib.util
import sys

_PUBLIC = {
    "Config": "config", "load_config": "config",
    "Decisions": "model.ensemble", "Ensemble": "model.ensemble",
    "load_run": "model.runs", "write_run": "model.runs",
    "Point": "simulate", "Series": "simulate", "Simulator": "simulate", "simulate": "simulate",
    "train": "model.training",
}

_MOVED = {  # earlier flat name -> its stage package
    **dict.fromkeys(["records", "parse", "sources", "sinks", "sink_process", "plot", "alarms", "alerts", "server",
                     "data"], "io"),
    **dict.fromkeys(["calibration", "windows", "rolling", "seasonality", "ensemble", "runs", "training", "trainer",
                     "detectors"], "model"),
    **dict.fromkeys(["runner", "keyed", "ticks", "gaps", "adapt", "drift", "refit", "state", "pipeline", "signals",
                     "streamed"], "online"),
    **dict.fromkeys(["metrics", "nab", "recovery"], "evaluation"),
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``anomaly.<earlier name>[.<more>]`` as the module at its new home (one module object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) < 2 or parts[0] != __name__ or parts[1] not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        _, earlier, *rest = spec.name.split(".")
        return importlib.import_module(".".join([__name__, _MOVED[earlier], earlier, *rest]))

    def exec_module(self, module):
        pass  # imported at its home already


sys.meta_path.insert(0, _Alias())  # first: a file under an aliased package's path must not load twice
