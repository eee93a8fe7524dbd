"""The stream as an object: made from a Config and StreamOptions, run in-process, no argparse below the CLI."""

from __future__ import annotations

import json

import pytest

from anomaly.errors import UserError
from anomaly.io.sinks import format_timestamps
from anomaly.online.pipeline import Pipeline, StreamOptions
from anomaly.simulate import simulate


def test_a_pipeline_streams_a_file_in_process_and_writes_every_record(quick_run, quick_config, tmp_path, capsys):
    series = simulate(1_500, seed=9, anomalies=True, start_index=quick_config.training.n_points,
                      config=quick_config.simulator)
    rows = "".join(f"{t},{v!r}\n" for t, v in zip(format_timestamps(series.timestamps), series.values.tolist()))
    (tmp_path / "in.csv").write_text("timestamp,value\n" + rows + "not a line\n")
    options = StreamOptions(source=str(tmp_path / "in.csv"), models=str(quick_run), rate=0, no_plot=True,
                            output=str(tmp_path / "out.jsonl"), quarantine=str(tmp_path / "q.jsonl"),
                            log=str(tmp_path / "anomaly.log"), quiet=True)
    assert Pipeline(quick_config, options).run() == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(records) == 1_500 and any(r["is_anomaly"] for r in records)
    assert len((tmp_path / "q.jsonl").read_text().splitlines()) == 1
    assert "1 input lines rejected" in capsys.readouterr().err


def test_a_pipeline_with_a_missing_source_raises_a_user_error(quick_run, quick_config, tmp_path):
    options = StreamOptions(source=str(tmp_path / "missing.csv"), models=str(quick_run), no_plot=True)
    with pytest.raises(UserError, match="no such file"):
        Pipeline(quick_config, options).run()
