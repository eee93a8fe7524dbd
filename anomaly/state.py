"""A stream's online state as bytes: numpy arrays and JSON in one ``.npz`` archive, never a pickle.

:meth:`~anomaly.runner.Runner.snapshot` gathers the state of each part of a runner (window
tail, gap handler, adapter, counters) as ``(arrays, meta)``: arrays of numbers and a
JSON-able dict. :func:`pack` writes them into one archive with a format version;
:func:`unpack` reads one back with ``allow_pickle=False`` and refuses other versions.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = 1  # bump when what a part writes changes meaning; older snapshots are then refused
META = "meta.json"

Part = tuple[dict[str, np.ndarray], dict]  # (arrays, JSON-able meta) of one stateful object


class SnapshotError(ValueError):
    """The bytes are not a snapshot this version can restore."""


def pack(parts: dict[str, Part], meta: dict | None = None) -> bytes:
    """Return one archive holding every part's arrays (``part.key``) and all the metas as JSON."""
    arrays, metas = {}, {}
    for name, (part_arrays, part_meta) in parts.items():
        metas[name] = part_meta
        for key, value in part_arrays.items():
            arrays[f"{name}.{key}"] = np.asarray(value)
    document = {"format": FORMAT, **(meta or {}), "parts": metas}
    arrays[META] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(blob: bytes) -> tuple[dict[str, Part], dict]:
    """Return the parts and the top-level meta of :func:`pack`'s output; raise :class:`SnapshotError`."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        document = json.loads(arrays.pop(META).tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SnapshotError(f"not a stream snapshot: {exc}") from None
    if document.get("format") != FORMAT:
        raise SnapshotError(f"snapshot format {document.get('format')!r}; this version reads format {FORMAT}")
    metas = document.pop("parts")
    parts = {name: ({}, meta) for name, meta in metas.items()}
    for key, value in arrays.items():
        name, _, field = key.partition(".")
        if name not in parts:
            raise SnapshotError(f"snapshot array {key!r} belongs to no part")
        parts[name][0][field] = value
    return parts, document


STREAM_FILE = "stream.state"  # a single stream's snapshot in a --state folder


def peek(blob: bytes) -> dict:
    """Return the top-level meta of a snapshot (which run, which detectors) without restoring it."""
    return unpack(blob)[1]


def read(folder: str | Path, name: str = STREAM_FILE) -> bytes | None:
    """Return the snapshot saved as ``name`` in ``folder``, or ``None`` when there is none."""
    path = Path(folder) / name
    return path.read_bytes() if path.is_file() else None


def write(folder: str | Path, blob: bytes, name: str = STREAM_FILE) -> Path:
    """Save ``blob`` as ``name`` in ``folder`` atomically (a crash leaves the previous one); return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.", delete=False) as handle:
        try:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)
    return path
