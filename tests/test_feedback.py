"""Feedback: labels are read safely, and they move later decisions the way the user meant."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from anomaly.config import AdaptConfig, SimulatorConfig
from anomaly.feedback import FeedbackFile, Label, main, parse_label, read_feedback
from anomaly.io.records import Chunk
from anomaly.online.runner import Runner
from anomaly.simulate import Simulator

NO_REFIT = dataclasses.replace(AdaptConfig(), refit=False)
TEN_AM = datetime(2026, 11, 24, 10, tzinfo=timezone.utc).timestamp()
WEEK = 1008  # points: the simulator's daily and weekly cycles repeat after this many


def test_labels_parse_from_iso_or_epoch_and_bad_lines_say_what_is_wrong():
    label = parse_label('{"label": "false-alarm", "start": "2026-11-24T10:00:00Z", "end": 1795600000000}')
    assert label.kind == "false_alarm" and label.start == TEN_AM and label.end == 1795600000.0
    for line, why in [("{oops", "not JSON"), ('{"label": "maybe", "start": 1}', "label must be"),
                      ('{"label": "anomaly"}', "start is missing"),
                      ('{"label": "anomaly", "start": 5, "end": 1}', "start <= end")]:
        with pytest.raises(ValueError, match=why):
            parse_label(line)


def test_the_feedback_file_is_followed_as_it_grows_and_nothing_is_silently_dropped(tmp_path):
    path = tmp_path / "feedback.jsonl"
    follower = FeedbackFile(path)
    assert follower.poll() == []  # not there yet: nothing
    with open(path, "a") as handle:
        handle.write('{"label": "anomaly", "start": 10, "end": 20}\nnot json\n{"label": "false_alarm", "st')
    assert follower.poll() == [Label("anomaly", 10.0, 20.0)]
    assert follower.problems == [f"{path}, line 2: not JSON (Expecting value); ignored"]
    with open(path, "a") as handle:
        handle.write('art": 30}\n')  # the rest of a line written in two goes
    assert follower.poll() == [Label("false_alarm", 30.0, 30.0)]
    with pytest.raises(ValueError, match="line 2"):
        read_feedback(path)


def test_the_feedback_command_labels_an_incident_from_the_alerts_file(tmp_path, capsys):
    alerts = tmp_path / "alerts.jsonl"
    events = [{"event": "opened", "incident": {"id": 2, "start": "2026-11-24 10:00:00", "end": "2026-11-24 10:00:00"}},
              {"event": "closed", "incident": {"id": 2, "start": "2026-11-24 10:00:00", "end": "2026-11-24 10:40:00"}}]
    alerts.write_text("".join(json.dumps(e) + "\n" for e in events))
    out = tmp_path / "feedback.jsonl"
    assert main(["false-alarm", "--incident", "2", "--alerts", str(alerts), "--file", str(out)]) == 0
    assert read_feedback(out) == [Label("false_alarm", TEN_AM, TEN_AM + 2400)]
    assert main(["anomaly", "--incident", "9", "--alerts", str(alerts), "--file", str(out)]) == 2
    assert "incident #9 is not in" in capsys.readouterr().err


def recurring(n_weeks: int = 6, strength: float = 8.0):
    """A normal stream in which one stretch, with the same spike, comes back every week to the point."""
    series = Simulator(SimulatorConfig(), seed=3, start_index=20_000).generate(n_weeks * WEEK)
    values = series.values.copy()
    first = 700
    values[first:first + 3] += strength
    pattern = values[first - 200:first + 200]
    starts = [first + k * WEEK for k in range(n_weeks)]
    for start in starts[1:]:  # the same shape, noise included, at the same phase of the week
        values[start - 200:start + 200] = pattern + (values[start - 201] - values[first - 201])
    return series.timestamps, values, starts


def stream_with(ensemble, timestamps, values, labels_at: dict, settings=NO_REFIT):
    runner = Runner(ensemble, adapt=settings)
    flags, size = [], 100
    for i in range(0, len(values), size):
        if i in labels_at:
            runner.feedback(labels_at[i])
        flags.append(runner.process(Chunk(timestamps[i:i + size], values[i:i + size], np.arange(i, i + size) + 1))[0])
    return runner, np.concatenate([b.is_anomaly for b in flags]), np.concatenate([b.p_value for b in flags])


def test_a_false_alarm_marked_once_stops_alerting_while_stronger_ones_still_do(quick_ensemble):
    timestamps, values, starts = recurring()
    stronger = starts[-1] - 300  # between two recurrences
    values[stronger:stronger + 3] += 30.0
    label = Label("false_alarm", timestamps[starts[0] - 10], timestamps[starts[0] + 40])
    _, control, _ = stream_with(quick_ensemble, timestamps, values, {})
    runner, taught, _ = stream_with(quick_ensemble, timestamps, values, {starts[0] + 200: [label]})

    def alerted(flags):
        return [bool(flags[s - 10:s + 40].any()) for s in starts[1:]]

    assert all(alerted(control))  # without feedback the same thing alerts every week
    assert not any(alerted(taught))  # marked once, it stops
    assert taught[stronger:stronger + 40].any() and control[stronger:stronger + 40].any()
    assert len(runner.adapter._taught) > 0


def test_a_labelled_anomaly_never_teaches_the_stream_that_it_is_normal(quick_ensemble):
    """A recurring pattern slowly learned as normal by adaptation stays anomalous once labelled."""
    timestamps, values, starts = recurring(strength=5.0)
    labels = [Label("anomaly", timestamps[s - 10], timestamps[s + 40]) for s in starts]  # known in advance
    settings = dataclasses.replace(NO_REFIT, gate=1e-6)  # the gate alone would not keep them out
    plain, _, p_plain = stream_with(quick_ensemble, timestamps, values, {}, settings)
    labelled, _, p_labelled = stream_with(quick_ensemble, timestamps, values, {0: labels}, settings)
    spikes = np.concatenate([np.arange(s, s + 40) for s in starts[1:]])
    # stream positions of the kept points: a thinned history skips some of the bulk, and keeps labelled ones whole
    recent = {name: np.isin(runner.adapter.kept.positions, spikes) for name, runner in
              (("plain", plain), ("labelled", labelled))}
    assert recent["labelled"].sum() >= 80  # two recurrences or more, whole
    assert not labelled.adapter.admitted()[recent["labelled"]].any()
    assert plain.adapter.admitted()[recent["plain"]].any()
    # later recurrences keep their evidence where the unlabelled stream learns them as normal
    assert np.log10(p_labelled[spikes]).min() < np.log10(p_plain[spikes]).min()
    assert np.log10(p_labelled[spikes]).sum() < np.log10(p_plain[spikes]).sum()


def test_training_teaches_a_labelled_false_alarm_as_normal(quick_config):
    from anomaly.model.training import train
    from anomaly.simulate import simulate

    series = simulate(12_000, seed=0, config=quick_config.simulator)
    t, v = series.timestamps, series.values.copy()
    v[11_000:11_003] += 8.0  # a spike the user says is fine
    label = Label("false_alarm", t[10_990], t[11_040])
    plain, _ = train(t, v, quick_config, seed=0)
    taught, report = train(t, v, quick_config, seed=0, labels=[label])
    assert report["taught_false_alarms"] == 51

    def p_min(ensemble):  # over the labelled stretch
        d = ensemble.decide(ensemble.scaler.transform(v[10_700:11_041]), ensemble.grid.positions(t[10_700:11_041]))
        return d.p_value[-51:].min()

    assert p_min(plain) < plain.alpha  # it alerts when nobody said otherwise
    assert p_min(taught) >= 2 * taught.alpha  # taught: the same pattern scores above twice the threshold


def test_train_py_reads_feedback_and_says_what_a_bad_file_holds(tmp_path):
    data = tmp_path / "history.csv"
    series = Simulator(SimulatorConfig(), seed=0).generate(3000)
    data.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(series.timestamps, series.values)))
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(json.dumps({"label": "anomaly", "start": series.timestamps[2000],
                                    "end": series.timestamps[2010]}) + "\n")
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "--quick", "--data", str(data), "--models", str(tmp_path / "m"),
               "--feedback", str(feedback)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(next((tmp_path / "m").glob("run-*/manifest.json")).read_text())
    assert manifest["excluded"] == 11 and manifest["data"]["feedback"] == str(feedback)
    feedback.write_text('{"label": "anomaly", "start": 1}\n{"label": "typo"}\n')
    bad = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "line 2: label must be one of" in bad.stderr
