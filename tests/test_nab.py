"""NAB's score and protocol: the scorer's ends, the corpus halves, and `evaluate nab` on a small NAB-style folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anomaly.evaluation.nab import PROFILES, halves, normalised, score_file


def test_flagging_each_window_at_its_start_scores_100_and_flagging_nothing_0():
    bounds = [(2000, 2100), (3000, 3050)]
    perfect = np.zeros(4000, dtype=bool)
    perfect[[2000, 3000]] = True
    late = np.zeros(4000, dtype=bool)
    late[[2090, 3040]] = True
    for profile in PROFILES.values():
        assert normalised([score_file(perfect, bounds, profile)]) == 100.0
        assert normalised([score_file(np.zeros(4000, dtype=bool), bounds, profile)]) == 0.0
        assert 0 < normalised([score_file(late, bounds, profile)]) < 100  # found late: less
        noisy = perfect.copy()
        noisy[3500:3510] = True  # ten false positives after the last window
        assert normalised([score_file(noisy, bounds, profile)]) < 100
    scored = score_file(perfect | (np.arange(4000) < 500), bounds, PROFILES["standard"])
    assert scored.false_positives == 0  # flags in the probation head are not counted


def test_the_corpus_halves_are_file_names_in_sorted_order_taken_alternately():
    files = [Path(f"data/{c}/{n}.csv") for c, n in
             [("b", "delta"), ("a", "alpha"), ("b", "charlie"), ("a", "bravo"), ("c", "echo")]]
    split = halves(files)
    assert split == {"a/alpha.csv": "A", "a/bravo.csv": "B", "b/charlie.csv": "A", "b/delta.csv": "B",
                     "c/echo.csv": "A"}
    assert halves(list(reversed(files))) == split  # the rule, not the order given


def _nab_folder(root: Path) -> Path:
    """Write a NAB-style folder of two simulated files with a label window around an injected spike each."""
    from anomaly.io.sinks import format_timestamps
    from anomaly.simulate import simulate

    windows = {}
    for i, name in enumerate(("first", "second")):
        series = simulate(2400, seed=40 + i)
        values = series.values.copy()
        values[1800] += 40.0
        path = root / "data" / "sim" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = format_timestamps(series.timestamps)
        path.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(stamps, values)))
        windows[f"sim/{name}.csv"] = [[stamps[1780].replace("T", " "), stamps[1830].replace("T", " ")]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_evaluate_nab_reports_both_halves_and_each_category(tmp_path, capsys):
    from anomaly.evaluate import main

    root = _nab_folder(tmp_path / "nab")
    assert main(["nab", "--root", str(root), "--out", str(tmp_path / "out"), "--quick", "--no-refit"]) == 0
    out = capsys.readouterr().out
    groups = [line.split(" (")[0] for line in out.splitlines() if "files)" in line]
    assert groups == ["all", "half A", "half B", "sim"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {f["name"]: f["half"] for f in summary["files"]} == {"first.csv": "A", "second.csv": "B"}
    assert summary["summary"]["all"]["ensemble"]["event_recall"] == 1.0  # both spikes found
