"""Detection: the ensemble finds injected anomalies of every kind without flooding normal points."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import score_series

from anomaly.evaluate import clean_normal, event_recall, false_alarm_rate, roc_auc
from anomaly.simulate import ANOMALY_KINDS, simulate


@pytest.fixture(scope="module")
def scored(quick_ensemble):
    series = simulate(30_000, seed=5, anomalies=True, start_index=20_000)
    p, p_det, first = score_series(quick_ensemble, series)
    return series, p, p_det, first


def test_ensemble_detects_injected_events_of_every_kind(scored, quick_ensemble):
    series, p, _, first = scored
    recall = event_recall(p < quick_ensemble.alpha, series.events, grace=5, scored_from=first)
    assert set(ANOMALY_KINDS) <= set(recall)
    assert recall["all"] >= 0.9, recall


def test_normal_points_are_flagged_at_most_twice_the_target(scored, quick_ensemble, quick_config):
    series, p, _, first = scored
    normal = clean_normal(series.labels, quick_config.windows.size)
    normal[:first] = False
    assert false_alarm_rate(p < quick_ensemble.alpha, normal) <= 2 * quick_ensemble.target_far


@pytest.mark.parametrize("index,name", list(enumerate(["dense_ae", "lstm_ae", "iforest", "shesd"])))
def test_each_detector_beats_random(scored, quick_ensemble, index, name):
    series, _, p_det, first = scored
    assert quick_ensemble.names[index] == name
    assert roc_auc(series.labels[first:], -p_det[first:, index]) > 0.5
