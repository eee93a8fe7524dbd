"""A tick of many series: one new point from each, scored in one vectorised pass per detector.

A stream of thousands of series sends, at each tick, one point per series. Scored one
series at a time (:meth:`~anomaly.online.runner.Runner.process`), each point costs half a
millisecond of Python. Here the points of every series whose models have the same shape
(detectors, windows, period, threshold) are scored together: each series' window becomes a
row, a shared model (the pooled autoencoder of a many-series run) sees all rows in one ONNX
Runtime call, the per-series detectors (S-H-ESD, Holt-Winters, EWMA) run as arrays over
their stacked parameters (``many_params``/``score_many``), and the calibrators as one
:class:`~anomaly.model.calibration.CalibratorTable`. The numbers are those of the series' own
runner, row by row (the same operations; matrix products may differ in the last bit).

Only the common case comes here: :meth:`~anomaly.online.runner.Runner.ready_for_tick` sends every
other point (invalid, after a gap, in warm-up, at the adapter's boundary) through the
series' runner as before. Between ticks each series' hot state sits in a lane
(:mod:`anomaly.online.lane`); its adapter sees tick points later, in blocks.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ..model.calibration import (MIN_EMPIRICAL, CalibratorTable, analytic_p_value, anomaly_score, combined_statistic,
                                 single_precision, with_alone)
from ..model.ensemble import SCALED_LIMIT, Ensemble, _pool
from ..model.warp import WARPS, by_rows

COMBINED = "combined"  # the combined evidence's calibrator table (no detector has this name)
PARALLEL_ROWS = 2048  # ticks of this many series are decided on every core
PARTS_PER_WORKER = 2  # parts a tick's rows are cut into, per core (measured at 10,000 series: 2, 4 and 8 alike)


def shape_of(ensemble: Ensemble) -> tuple:
    """Return what ensembles scored together must share: detectors and their settings, period, threshold."""
    detectors = tuple((name, type(d).__name__, d.window, getattr(d, "alpha", None), getattr(d, "max_anoms", None),
                       getattr(d, "direction", None)) for name, d in ensemble.detectors.items())
    return detectors, ensemble.period, ensemble.alpha, ensemble.combine


class TickScorer:
    """Scores one point of each of many series (see the module); ensembles are registered on first sight."""

    def __init__(self):
        self._groups: dict[tuple, _Group] = {}
        self._known: dict[int, tuple[_Group, int]] = {}  # id(ensemble) -> its group and slot

    def place(self, ensemble: Ensemble) -> tuple[_Group, int]:
        """Return the group of ``ensemble``'s shape and its slot there (registered while it lives)."""
        if (known := self._known.get(id(ensemble))) is not None:
            return known
        shape = shape_of(ensemble)
        group = self._groups.get(shape)
        if group is None:
            group = self._groups[shape] = _Group(ensemble)
        slot = group.add(ensemble)
        self._known[id(ensemble)] = group, slot
        weakref.finalize(ensemble, self._forget, id(ensemble), group, slot)
        return group, slot

    def _forget(self, key: int, group: _Group, slot: int) -> None:
        self._known.pop(key, None)
        group.remove(slot)


@dataclass(eq=False)
class _Numbers:
    """A numbers slot of a group and the ensembles using it (see ``_Group``)."""

    slot: int
    key: tuple[int, int]
    detectors: dict  # held: their ids make the key
    scaler: object
    users: int = 1


def _learned_arrays(detectors: dict):
    """Yield ``(name, detector, param, array)`` for each learned array a detector's ``many_params`` gives as its own
    attribute (``param_``): what a group may lend it (see ``_Group._lend``)."""
    for name, detector in detectors.items():
        for param, value in getattr(detector, "many_params", dict)().items():
            if isinstance(value, np.ndarray) and value.ndim and getattr(detector, f"{param}_", None) is value:
                yield name, detector, param, value


class _Group:
    """Ensembles of one shape: their learned numbers stacked by slot, their calibrators in tables."""

    def __init__(self, ensemble: Ensemble):
        self.names = ensemble.names
        self.window = ensemble.window
        self.period = ensemble.period
        self.alpha = ensemble.alpha
        self.combine = ensemble.combine
        self.settings = dict(ensemble.detectors)  # one ensemble's detectors: the settings all share
        self.combined_columns, self.alone_columns = ensemble.combined_columns, ensemble.alone_columns
        # S-H-ESD states the expected band with its scores: the first such detector gives it, as in Ensemble.decide
        self.band = next((name for name, d in self.settings.items() if hasattr(d, "series_stats")), None)
        # raw scores and combined statistics are made in single precision: so are the samples' copies (memory)
        self.tables = {name: CalibratorTable(np.float32) for name in [*self.names, COMBINED]}
        # the learned numbers ("center", "scale", f"{name}.{key}") by numbers slot: an ensemble recalibrated is a
        # copy that shares its detectors and scaler (Adapter, recalibrated), so the ensembles of one series (the
        # trained one, the one in use) share one slot of numbers (memory of many series: a copy each held 4 KB)
        self._numbers: dict[str, np.ndarray] = {}
        self._objects: dict[str, list] = {name: [] for name in self.names if not hasattr(self.settings[name],
                                                                                           "many_params")}
        self._shared: dict[tuple[int, int], _Numbers] = {}  # (id of detectors, id of scaler) -> their numbers slot
        self._free_numbers: list[int] = []
        self._unused_numbers: list[_Numbers] = []  # numbers no ensemble uses any more, let go by tidy
        self._numbers_size = 0
        # by ensemble slot: its numbers slot and whether its combination is calibrated analytically
        self._by_slot: list[_Numbers | None] = []
        self._numbers_slot = np.zeros(16, dtype=np.int64)
        self._analytic = np.zeros(16, dtype=bool)
        self._calibrator_slots = {name: np.zeros(0, dtype=np.int64) for name in self.tables}
        self._free: list[int] = []
        self._size = 0

    def add(self, ensemble: Ensemble) -> int:
        """Copy in ``ensemble``'s numbers (unless an ensemble sharing its detectors and scaler has) and
        calibrators; return its slot."""
        self._let_go_unused()  # (a group that seldom ticks still lets go of what no ensemble uses)
        slot = self._free.pop() if self._free else self._size
        self._size = max(self._size, slot + 1)
        if slot >= len(self._analytic):
            self._numbers_slot = np.concatenate([self._numbers_slot, np.zeros_like(self._numbers_slot)])
            self._analytic = np.concatenate([self._analytic, np.zeros_like(self._analytic)])
        numbers = self._numbers_of(ensemble)
        self._by_slot.extend([None] * (slot + 1 - len(self._by_slot)))
        self._by_slot[slot] = numbers
        self._numbers_slot[slot] = numbers.slot
        self._analytic[slot] = ensemble.combined_.size < MIN_EMPIRICAL
        for name, calibrator in [*ensemble.calibrators_.items(), (COMBINED, ensemble.combined_)]:
            slots = self._calibrator_slots[name]
            if slot >= len(slots):
                slots = self._calibrator_slots[name] = np.concatenate([slots, np.zeros(max(slot + 1, 16), np.int64)])
            slots[slot] = self.tables[name].add(calibrator)
        return slot

    def _numbers_of(self, ensemble: Ensemble) -> _Numbers:
        """Return the numbers slot of ``ensemble``'s detectors and scaler, copied in if new, one user more."""
        key = id(ensemble.detectors), id(ensemble.scaler)
        if (numbers := self._shared.get(key)) is not None:
            numbers.users += 1
            return numbers
        slot = self._free_numbers.pop() if self._free_numbers else self._numbers_size
        self._numbers_size = max(self._numbers_size, slot + 1)
        # (holding the detectors and scaler keeps their ids from being reused while the key stands)
        numbers = self._shared[key] = _Numbers(slot, key, ensemble.detectors, ensemble.scaler)
        grown = self._put(slot, "center", ensemble.scaler.center)
        grown |= self._put(slot, "scale", ensemble.scaler.scale)
        grown |= self._put(slot, "warp", WARPS.index(ensemble.scaler.warp))
        grown |= self._put(slot, "offset", ensemble.scaler.offset)
        for name, detector in ensemble.detectors.items():
            if name in self._objects:
                objects = self._objects[name]
                objects.extend([None] * (slot + 1 - len(objects)))
                objects[slot] = detector
            else:
                for param, value in detector.many_params().items():
                    grown |= self._put(slot, f"{name}.{param}", value)
        # (only once every number is in: a detector lent a row before its numbers were copied would copy that row)
        for lent in self._shared.values() if grown else [numbers]:
            self._lend(lent)
        return numbers

    def _lend(self, numbers: _Numbers) -> None:
        """Point the learned arrays (seasonal profiles) of the detectors of ``numbers`` at their rows in the stacked
        numbers, read-only: a series' profiles are held once, not twice (memory of many series: 2.3 KB a series at
        daily 10-minute points, 23 KB at daily minutes). (A copy made of a detector while lent would keep the row:
        nothing copies detectors, a recalibrated or restored ensemble shares them.)"""
        for name, detector, param, _ in _learned_arrays(numbers.detectors):
            row = self._numbers[f"{name}.{param}"][numbers.slot]
            row.flags.writeable = False
            setattr(detector, f"{param}_", row)

    @staticmethod
    def _give_back(numbers: _Numbers) -> None:
        """Give the detectors of ``numbers`` copies of their lent arrays (their slot is about to be reused)."""
        for _, detector, param, value in _learned_arrays(numbers.detectors):
            if value.base is not None:
                setattr(detector, f"{param}_", value.copy())

    def remove(self, slot: int) -> None:
        """Give back ``slot`` (its ensemble is gone)."""
        for name, table in self.tables.items():
            table.remove(int(self._calibrator_slots[name][slot]))
        numbers, self._by_slot[slot] = self._by_slot[slot], None
        numbers.users -= 1
        if not numbers.users:
            # let go in tidy: this is called when an ensemble is collected, which may be in the middle of lending
            self._unused_numbers.append(numbers)
        self._free.append(slot)

    def tidy(self) -> None:
        """Take back the room of the calibrators and numbers of ensembles let go (call between ticks: it moves
        samples and gives lent arrays back)."""
        for table in self.tables.values():
            table.tidy()
        self._let_go_unused()

    def _let_go_unused(self) -> None:
        """Free the numbers slots no ensemble uses any more, their detectors given copies of what was lent."""
        while self._unused_numbers:  # (popped one by one: an ensemble collected on another thread may add one)
            numbers = self._unused_numbers.pop()
            # taken up again since, or let go already (its users fell to 0 twice before this)
            if numbers.users or self._shared.get(numbers.key) is not numbers:
                continue
            self._give_back(numbers)
            del self._shared[numbers.key]
            for objects in self._objects.values():
                objects[numbers.slot] = None
            self._free_numbers.append(numbers.slot)

    def _put(self, slot: int, key: str, value) -> bool:
        """Copy ``value`` into row ``slot`` of the numbers ``key``; return whether that column was made anew (its
        rows moved: what was lent from it must be lent again)."""
        value = np.asarray(value, dtype=np.float64)
        column = self._numbers.get(key)
        grown = column is None or slot >= len(column)
        if grown:
            # (by a quarter: a series' numbers are a seasonal profile or two, 2.3 KB at daily 10-minute points)
            size = 0 if column is None else len(column)
            fresh = np.zeros((max(size + size // 4, slot + 1, 16), *value.shape))
            if column is not None:
                fresh[:len(column)] = column
            column = self._numbers[key] = fresh
        column[slot] = value
        return grown

    def _params(self, name: str, slots: np.ndarray) -> dict[str, np.ndarray]:
        prefix, at = name + ".", self._numbers_slot[slots]
        return {key[len(prefix):]: column[at] for key, column in self._numbers.items() if key.startswith(prefix)}

    def warped(self, slots: np.ndarray, values: np.ndarray, function: str = "forward") -> np.ndarray:
        """Return ``values`` ``(n,)`` warped by each row's own scaler (as ``Scaler.warped``; ``function`` "inverse":
        as its warp's inverse, "slope": its derivative)."""
        at = self._numbers_slot[slots]
        codes = self._numbers["warp"][at]
        if not codes.any():  # (no series warped: the values as they are)
            return np.ones(len(values)) if function == "slope" else values
        return by_rows(function, values, codes.astype(np.int64), self._numbers["offset"][at])

    def scaled(self, slots: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Return ``values`` ``(n,)`` scaled by each row's own scaler (as ``Scaler.transform``)."""
        at = self._numbers_slot[slots]
        return (self.warped(slots, values) - self._numbers["center"][at]) / self._numbers["scale"][at]

    def decide(self, slots: np.ndarray, windows: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        """Return the decisions of the last point of each row, as :meth:`Ensemble.decide` gives them.

        ``slots`` ``(n,)``: each row's ensemble; ``windows`` ``(n, window)`` scaled values and
        ``positions`` ``(n, window)`` grid positions, the scored point last. Returns arrays
        ``raw`` and ``p_detectors`` ``(n, k)``, ``p_value``, ``score``, ``is_anomaly``,
        ``expected`` and ``spread`` ``(n,)`` (the last two in each series' units).
        """
        parts = [d for _, d in self.decide_parts(slots, windows, positions)]
        return parts[0] if len(parts) == 1 else {key: np.concatenate([d[key] for d in parts]) for key in parts[0]}

    def decide_parts(self, slots: np.ndarray, windows: np.ndarray, positions: np.ndarray):
        """Yield ``(rows, decisions)`` of consecutive parts of the rows, in order (see :meth:`decide`).

        Many rows are cut into parts decided on every core (the medians and ONNX Runtime
        release the GIL), all started at once: the caller takes in each part's decisions
        while the later parts are still being worked out."""
        n = len(slots)
        if n < PARALLEL_ROWS or _pool()._max_workers < 2:
            yield slice(0, n), self._decide(slots, windows, positions)
            return
        cuts = np.linspace(0, n, PARTS_PER_WORKER * _pool()._max_workers + 1).astype(int)
        parts = [slice(lo, hi) for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist())]
        futures = [_pool().submit(self._decide, slots[rows], windows[rows], positions[rows]) for rows in parts]
        for rows, future in zip(parts, futures):
            yield rows, future.result()

    def _decide(self, slots: np.ndarray, windows: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
        beyond = ~(np.abs(windows[:, -1]) < SCALED_LIMIT)
        windows = np.clip(windows, -SCALED_LIMIT, SCALED_LIMIT)
        phase = np.mod(positions, self.period) if self.period >= 2 else None
        columns, band = [], None
        for name in self.names:
            detector = self.settings[name]
            start = self.window - detector.window
            rows, points = windows[:, start:], None if phase is None else phase[:, start:]
            if hasattr(detector, "stats_many"):
                stats = detector.stats_many(self._params(name, slots), rows, points)
                columns.append(stats.score)
                if band is None and name == self.band:
                    band = stats.center, stats.spread
            elif hasattr(detector, "score_many"):
                columns.append(detector.score_many(self._params(name, slots), rows,
                                                   None if points is None else points[:, -1]))
            else:
                columns.append(self._by_object(name, slots, rows, None if points is None else points[:, -1]))
        if band is None:  # as Ensemble._rolling_band: the window's median and MAD
            center = np.median(windows, axis=1)
            band = center, 1.4826 * np.median(np.abs(windows - center[:, None]), axis=1)
        raw = single_precision(np.column_stack(columns))  # as Ensemble._score_all
        p_detectors = np.column_stack([self.tables[name].p_value(self._calibrator_slots[name][slots], raw[:, j])
                                       for j, name in enumerate(self.names)])
        statistic = combined_statistic(p_detectors, self.combined_columns, self.alone_columns, self.combine)
        analytic = self._analytic[slots]
        p_value = np.empty(len(slots))
        p_value[analytic] = analytic_p_value(statistic[analytic], self.combine, len(self.combined_columns))
        p_value[~analytic] = self.tables[COMBINED].p_value(self._calibrator_slots[COMBINED][slots[~analytic]],
                                                           statistic[~analytic])
        p_value = np.where(beyond, np.finfo(float).tiny, with_alone(p_value, p_detectors, self.alone_columns))
        at = self._numbers_slot[slots]
        scale = self._numbers["scale"][at]
        expected = self.warped(slots, band[0] * scale + self._numbers["center"][at], "inverse")  # (as Ensemble.decide)
        return {"raw": raw, "p_detectors": p_detectors, "p_value": p_value,
                "score": anomaly_score(p_value, self.alpha), "is_anomaly": p_value < self.alpha,
                "expected": expected, "spread": band[1] * scale / self.warped(slots, expected, "slope")}

    def _by_object(self, name: str, slots: np.ndarray, windows: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
        """Scores of a detector without stacked numbers: one call per distinct detector object (one, when shared)."""
        objects = self._objects[name]
        owners = [objects[slot] for slot in self._numbers_slot[slots].tolist()]
        out = np.empty(len(slots))
        rows_of: dict[int, list[int]] = {}
        for i, detector in enumerate(owners):
            rows_of.setdefault(id(detector), []).append(i)
        for rows in rows_of.values():
            rows = np.array(rows)
            out[rows] = owners[rows[0]].score(windows[rows], None if phase is None else phase[rows])
        return out
