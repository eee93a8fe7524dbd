"""Detection: the ensemble finds injected anomalies of every kind, and its flags belong to the points that
are anomalous: normal points after an event are flagged at the target rate, not for a window longer.

Two training seeds, each scored on its own anomaly stream (the numbers are statistical)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import score_series

from anomaly.config import Config
from anomaly.evaluate import after_events, clean_normal, event_recall, false_alarm_rate, roc_auc
from anomaly.model.training import train
from anomaly.simulate import ANOMALY_KINDS, simulate


@pytest.fixture(scope="module", params=[0, 1], ids=["seed0", "seed1"])
def scored(request, quick_ensemble, second_ensemble):
    ensemble = quick_ensemble if request.param == 0 else second_ensemble
    series = simulate(40_000, seed=5 + request.param, anomalies=True, start_index=20_000)
    p, p_det, first = score_series(ensemble, series)
    return ensemble, series, p, p_det, first


def test_ensemble_detects_injected_events_of_every_kind(scored):
    ensemble, series, p, _, first = scored
    recall = event_recall(p < ensemble.alpha, series.events, grace=5, scored_from=first)
    assert set(ANOMALY_KINDS) <= set(recall)
    assert recall["all"] >= 0.95, recall
    assert min(recall[kind] for kind in ANOMALY_KINDS) >= 0.8, recall


def test_normal_points_are_flagged_at_most_twice_the_target(scored, quick_config):
    ensemble, series, p, _, first = scored
    normal = clean_normal(series.labels, quick_config.windows.size)
    normal[:first] = False
    assert false_alarm_rate(p < ensemble.alpha, normal) <= 2 * ensemble.target_far


def test_flags_do_not_linger_after_an_event(scored):
    """From 10 points after an event's end on, normal points are flagged near the target rate. (Before the
    evidence became point-wise, 10-32 points after an event 7-8% were flagged: 75x the target.)"""
    ensemble, series, p, _, first = scored
    flags = p < ensemble.alpha
    counts = after_events(flags[first:], series.labels[first:], edges=(1, 10, 33))
    assert counts.normal[1] > 1500 and counts.normal[2] > 20_000
    # 3x, not 2x: about 2,000 points make the 10-32 bucket, where the target expects 2 flags
    assert counts.rates[1] <= 3 * ensemble.alpha, counts
    assert counts.rates[2] <= 2 * ensemble.alpha, counts
    assert counts.rates[0] > 10 * ensemble.alpha  # the return edge itself may be flagged, and is


@pytest.mark.parametrize("index,name", list(enumerate(Config().ensemble.detectors)))
def test_each_detector_ranks_event_onsets_above_normal_points(scored, quick_config, index, name):
    """Point-wise evidence ranks the first point of an event (where it starts to differ) above normal points.
    (The inside of a flat-line or a level shift is not evidence against any one point.)"""
    ensemble, series, _, p_det, first = scored
    assert ensemble.names[index] == name
    onset = np.zeros(len(series.values), dtype=bool)
    onset[[e.start for e in series.events if e.kind and e.start >= first]] = True
    normal = clean_normal(series.labels, quick_config.windows.size)
    normal[:first] = False
    chosen = onset | normal
    assert roc_auc(onset[chosen], -p_det[chosen, index]) > 0.7


CALIBRATION_HISTORY = 60_000  # points: the combined calibrator then holds ~21,000, ~21 beyond the 1e-3 quantile


@pytest.mark.parametrize("seed", [0, 1])
def test_the_false_alarm_rate_is_kept_on_fresh_normal_data(quick_config, seed):
    """The p-value is calibrated: at any threshold the flagged share of fresh normal points is near it.

    Quick models on a history long enough for the claim: the quick session runs (20,000 points)
    calibrate the 1e-3 quantile on ~7 points beyond it, whose sampling error alone is ~40%."""
    history = simulate(CALIBRATION_HISTORY, seed=seed, config=quick_config.simulator)
    ensemble = train(history.timestamps, history.values, quick_config, seed=seed)[0]
    fresh = simulate(60_000, seed=107 + seed, start_index=CALIBRATION_HISTORY, config=quick_config.simulator)
    p, _, first = score_series(ensemble, fresh)
    for target in (1e-2, 1e-3):
        observed = float(np.mean(p[first:] < target))
        assert 0.5 * target <= observed <= 2 * target, (target, observed)


def test_evaluate_sim_reports_recall_per_kind_and_flags_after_events_for_every_detector(quick_run, capsys):
    from anomaly.evaluate import main

    assert main(["sim", "--models", str(quick_run), "--points", "6000", "--no-adapt"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    header = next(line.split() for line in out.splitlines() if line.split()[:1] == ["recall"])
    assert header[-4:] == ["1-9", "10-32", "33-99", "100+"]
    for name in ("ensemble", *Config().ensemble.detectors):
        row = lines[name]
        assert len(row) == len(header) + 1
        assert 0 <= float(row[1]) <= 1  # recall
    assert float(lines["ensemble"][1]) >= 0.8
    assert float(lines["ensemble"][-3].rstrip("x")) <= 2  # 10-32 points after an event: at most twice the target
    assert main(["sim", "--models", str(quick_run / "missing")]) == 2
