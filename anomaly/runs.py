"""Trained runs on disk: written atomically, with a pointer to the latest.

``models/<run>/`` holds ``manifest.json`` and the ensemble; ``models/LATEST`` names the
newest run. A run is built in a hidden temporary folder and renamed into place with
``os.replace``, and LATEST is swapped the same way, so a crash mid-training leaves the
previous run and pointer untouched.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .ensemble import Ensemble

LATEST = "LATEST"
PACKAGES = ("numpy", "scipy", "scikit-learn", "statsmodels", "tensorflow", "keras", "matplotlib")


def library_versions() -> dict[str, str]:
    """Return the installed versions of Python and the libraries a run depends on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_run(models_dir: str | Path, ensemble: Ensemble, manifest: dict, move_latest: bool = True) -> Path:
    """Save ``ensemble`` and ``manifest`` as a new run; point LATEST at it (if ``move_latest``); return its path."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    name = datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S-%f")
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models_dir))
    try:
        ensemble.save(staging)
        manifest = {"run": name, "created": datetime.now(timezone.utc).isoformat(),
                    "versions": library_versions(), **manifest}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        final = models_dir / name
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if move_latest:
        handle, path = tempfile.mkstemp(prefix=f".{LATEST}-", dir=models_dir)  # one per writer
        os.close(handle)
        pointer = Path(path)
        pointer.write_text(name + "\n")
        os.replace(pointer, models_dir / LATEST)
    return final


def latest_run(models_dir: str | Path) -> Path | None:
    """Return the run LATEST points at, or ``None`` when there is no complete run."""
    models_dir = Path(models_dir)
    pointer = models_dir / LATEST
    if not pointer.is_file():
        return None
    run = models_dir / pointer.read_text().strip()
    return run if (run / "manifest.json").is_file() else None


def resolve_run(path: str | Path) -> Path:
    """Return the run folder for ``path``: a run itself, or a models folder (its latest run).

    Raises ``FileNotFoundError`` with a hint when neither holds a trained run.
    """
    path = Path(path)
    if (path / "manifest.json").is_file():
        return path
    run = latest_run(path)
    if run is None:
        raise FileNotFoundError(f"no trained run in {path}: run `python train.py --models {path}` first")
    return run


def load_run(path: str | Path) -> tuple[Ensemble, dict]:
    """Return the ensemble and manifest of a run (or of a models folder's latest run)."""
    run = resolve_run(path)
    return Ensemble.load(run), json.loads((run / "manifest.json").read_text())


def simulator_start(manifest: dict) -> int:
    """Return where a simulated stream should start for this run: after its training points, when it trained
    on the simulator (the stream then continues its history), else 0."""
    return manifest.get("points", 0) if manifest.get("data", {}).get("source") == "simulator" else 0


def run_config(manifest: dict, fallback=None):
    """Return the :class:`~anomaly.config.Config` a run was trained with; ``fallback`` (default settings
    when ``None``) for a run from an older version that did not record it."""
    from .config import Config, config_from_dict

    try:
        return config_from_dict(manifest["config"])
    except (KeyError, ValueError):
        return fallback if fallback is not None else Config()
