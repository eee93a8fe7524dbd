"""A stream's online state as bytes: numpy arrays and JSON in one blob, never a pickle.

:meth:`~anomaly.online.runner.Runner.snapshot` gathers the state of each part of a runner (window
tail, gap handler, adapter, counters) as ``(arrays, meta)``: arrays of numbers and a
JSON-able dict. :func:`pack` writes them into one blob (a JSON header, then the arrays'
bytes) with a format version; :func:`unpack` reads one back, refuses other versions and
arrays of objects, and still reads the ``.npz`` archives of earlier versions.
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


MAGIC = b"ANOMALY-STATE\x00"  # what a snapshot begins with (one from before 2026-11-29 is an .npz archive)


def pack(parts: dict[str, Part], meta: dict | None = None) -> bytes:
    """Return one blob holding every part's arrays (``part.key``) and all the metas as JSON.

    The blob is :data:`MAGIC`, the length of a JSON header (8 bytes, little-endian), the
    header (the metas, and each array's dtype, shape and place), then the arrays' bytes:
    read back without parsing an archive entry per array (a series' state is read and
    written at every micro-batch of the Spark job). Arrays of objects are refused."""
    metas, index, buffers, offset = {}, [], [], 0
    for name, (part_arrays, part_meta) in parts.items():
        metas[name] = part_meta
        for key, value in part_arrays.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise TypeError(f"state array {name}.{key} holds Python objects; only numbers and text are kept")
            index.append([f"{name}.{key}", array.dtype.str, list(array.shape), offset, array.nbytes])
            buffers.append(array.tobytes())
            offset += array.nbytes
    header = json.dumps({"format": FORMAT, **(meta or {}), "parts": metas, "arrays": index}).encode()
    return b"".join([MAGIC, len(header).to_bytes(8, "little"), header, *buffers])


def _header(blob: bytes) -> tuple[dict, int]:
    """Return the JSON header of a :func:`pack` blob and where its arrays start; raise :class:`SnapshotError`."""
    start = len(MAGIC) + 8
    try:
        length = int.from_bytes(blob[len(MAGIC):start], "little")
        return json.loads(blob[start:start + length]), start + length
    except ValueError as exc:
        raise SnapshotError(f"not a stream snapshot: {exc}") from None


def unpack(blob: bytes) -> tuple[dict[str, Part], dict]:
    """Return the parts and the top-level meta of :func:`pack`'s output; raise :class:`SnapshotError`."""
    if not blob.startswith(MAGIC):
        arrays, document = _unpack_npz(blob)
    else:
        document, start = _header(blob)
        arrays = {}
        for key, dtype, shape, offset, nbytes in document.pop("arrays", []):
            dtype = np.dtype(dtype)
            if dtype.hasobject or start + offset + nbytes > len(blob):
                raise SnapshotError(f"not a stream snapshot: array {key!r} is not numbers or text, or cut short")
            arrays[key] = np.frombuffer(blob, dtype, int(np.prod(shape)), start + offset).reshape(shape).copy()
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


def _unpack_npz(blob: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """Read a snapshot written before the blob format: one ``.npz`` archive (never unpickled)."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        return arrays, json.loads(arrays.pop(META).tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SnapshotError(f"not a stream snapshot: {exc}") from None


STREAM_FILE = "stream.state"  # a single stream's snapshot in a --state folder


def peek(blob: bytes) -> dict:
    """Return the top-level meta of a snapshot (which run, which detectors) without restoring it."""
    if blob.startswith(MAGIC):  # the header alone
        document = _header(blob)[0]
        document.pop("arrays", None)
        document.pop("parts", None)
        return document
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
