"""Trained runs on disk: written atomically, hashed, verified before they are trusted.

``models/<run>/`` holds ``manifest.json`` and the ensemble; ``models/LATEST`` names the
newest run. A run is built in a hidden temporary folder, every file fsynced, and renamed
into place with ``os.replace``; LATEST is swapped the same way under a lock file
(``models/.lock``), so a crash mid-training leaves the previous run and pointer untouched,
and a refit and a ``train.py`` running at once cannot both move it. The manifest holds the
SHA-256 of every other file of the run, checked at load: a changed or truncated file is a
one-line error naming it. A run holds data only (JSON, numpy arrays without pickles, ONNX
graphs, Keras files that are never loaded): loading one runs no code from it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .detectors import REGISTRY
from .ensemble import Ensemble

LATEST = "LATEST"
LOCK = ".lock"
STAGING = ".tmp-"  # prefix of a run being written
SERIES = "series"  # the folder of a many-series run that holds one ensemble per series
STALE_S = 3600  # a staging folder older than this was left by a crash: the next run removes it
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


def check_writable(models_dir: str | Path) -> None:
    """Create ``models_dir`` if needed and check that a run can be written there; raises ``OSError`` if not."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    handle, probe = tempfile.mkstemp(prefix=STAGING, dir=models_dir)
    os.close(handle)
    os.unlink(probe)


def file_hashes(run: Path) -> dict[str, str]:
    """Return the SHA-256 (hex) of every file under ``run`` but ``manifest.json``, by relative path."""
    hashes = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        name = path.relative_to(run).as_posix()
        if name != "manifest.json":
            hashes[name] = _sha256(path)
    return hashes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_run(run: Path, manifest: dict) -> None:
    """Raise ``ValueError`` naming the first file of ``run`` that is missing or not as it was saved."""
    hashes = manifest.get("files")
    if not isinstance(hashes, dict) or not hashes:
        raise ValueError(f"{run}: saved without file hashes (by an older version): train new models "
                         "(python train.py)")
    for name, expected in hashes.items():
        path = run / name
        if ".." in Path(name).parts or not path.is_file():
            raise ValueError(f"{path}: missing from the run: train new models or restore the run")
        if _sha256(path) != expected:
            raise ValueError(f"{path}: changed or truncated since it was saved (SHA-256 differs from "
                             "manifest.json): train new models or restore the run")


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder``, then the folders themselves, to the disk."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):  # files before their folders
        _fsync(path)
    _fsync(folder)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_stale(models_dir: Path, older_than_s: float = STALE_S) -> list[str]:
    """Remove staging folders and pointer files left by crashed writers; return their names."""
    removed = []
    now = time.time()
    for path in list(models_dir.glob(STAGING + "*")) + list(models_dir.glob(f".{LATEST}-*")):
        try:
            if now - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path.name)
        except OSError:
            pass  # another writer's, or already gone
    return removed


@contextmanager
def locked(models_dir: Path):
    """Hold ``models_dir``'s lock file exclusively (waiting for it) while moving LATEST."""
    with open(models_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_run(models_dir: str | Path, ensemble: Ensemble | dict[str, Ensemble], manifest: dict,
              move_latest: bool | Callable[[Path | None], bool] = True) -> Path:
    """Save ``ensemble`` and ``manifest`` as a new run and return its path.

    ``ensemble`` may be a dict of series key -> ensemble (one per series): each is saved in
    ``series/<folder>/`` and the manifest's ``series`` maps each key to its folder.

    LATEST moves to it when ``move_latest`` is true, or, when it is a function, when it
    returns true for the run LATEST names at that moment (under the lock, so no other
    writer moves LATEST in between).
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(models_dir)
    name = datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S-%f")
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=models_dir))
    try:
        if isinstance(ensemble, dict):
            folders = {key: series_folder(key) for key in ensemble}
            shared = _shared_detectors(ensemble)
            for detector_name, detector in shared.items():  # once for all series
                detector.save(staging / "detectors" / detector_name)
            for key, one in ensemble.items():
                one.save(staging / SERIES / folders[key], frozenset(shared))
            manifest = {**manifest, "series": folders, "shared_detectors": sorted(shared)}
        else:
            ensemble.save(staging)
        manifest = {"run": name, "created": datetime.now(timezone.utc).isoformat(),
                    "versions": library_versions(), **manifest, "files": file_hashes(staging)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        _fsync_tree(staging)
        final = models_dir / name
        os.replace(staging, final)
        _fsync(models_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if move_latest:
        with locked(models_dir):
            if move_latest is True or move_latest(latest_run(models_dir)):
                _point_latest(models_dir, name)
    return final


def _point_latest(models_dir: Path, name: str) -> None:
    handle, path = tempfile.mkstemp(prefix=f".{LATEST}-", dir=models_dir)  # one per writer
    try:
        os.write(handle, (name + "\n").encode())
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(path, models_dir / LATEST)
    _fsync(models_dir)


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
    """Return the ensemble and manifest of a run (or of a models folder's latest run), verified first.

    Raises ``ValueError`` naming the file when the run is not as it was saved (see
    :func:`verify_run`) or when it holds many series (see :func:`load_series`),
    ``FileNotFoundError`` when there is no run.
    """
    run, manifest = _verified(path)
    if "series" in manifest:
        raise ValueError(f"{run} holds {len(manifest['series'])} series, one ensemble each: stream a source that "
                         "names its series (a 'series' column)")
    return Ensemble.load(run), manifest


def load_series(path: str | Path) -> tuple[dict[str, Ensemble], dict]:
    """Return the ensembles of a run, by series key (``{"": ensemble}`` for a run of one series), and its manifest."""
    run, manifest = _verified(path)
    if "series" not in manifest:
        return {"": Ensemble.load(run)}, manifest
    names = manifest.get("shared_detectors", [])
    shared = {name: REGISTRY[name].load(run / "detectors" / name) for name in names}
    return {key: Ensemble.load(run / SERIES / folder, shared) for key, folder in manifest["series"].items()}, manifest


def _shared_detectors(ensembles: dict[str, Ensemble]) -> dict:
    """Return the detectors every ensemble holds as one and the same object (a pooled model), by name."""
    first = next(iter(ensembles.values()))
    return {name: detector for name, detector in first.detectors.items()
            if all(one.detectors.get(name) is detector for one in ensembles.values())} if len(ensembles) > 1 else {}


def _verified(path: str | Path) -> tuple[Path, dict]:
    run = resolve_run(path)
    try:
        manifest = json.loads((run / "manifest.json").read_text())
    except ValueError as exc:
        raise ValueError(f"{run / 'manifest.json'}: not valid JSON ({exc})") from None
    verify_run(run, manifest)
    return run, manifest


def series_folder(key: str) -> str:
    """Return the folder name of a series in a run: its key hashed (any text is a safe key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def simulator_start(manifest: dict) -> int:
    """Return where a simulated stream should start for this run: after its training points, when it trained
    on the simulator (the stream then continues its history), else 0."""
    return manifest.get("points", 0) if manifest.get("data", {}).get("source") == "simulator" else 0


def run_config(manifest: dict, fallback=None):
    """Return the :class:`~anomaly.config.Config` a run was trained with; ``fallback`` (default settings
    when ``None``) for a run from an older version that did not record it."""
    from ..config import Config, config_from_dict

    try:
        return config_from_dict(manifest["config"])
    except (KeyError, ValueError):
        return fallback if fallback is not None else Config()
