"""The stream behind ``stream.py``: a source in, runners scoring it, records, incidents and alerts out.

:class:`Pipeline` is made from a :class:`~anomaly.config.Config` and :class:`StreamOptions`
(what ``stream.py``'s flags say, without argparse); :meth:`Pipeline.run` streams until the
source ends or a stop is asked for, prints the summary and returns the exit status.
Problems the user can fix raise :class:`~anomaly.errors.UserError`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import progress
from ..config import Config
from ..errors import UserError
from ..io.server import Limits
from ..model.trainer import train_and_save

DEFAULT_MODELS = "models"
SINK_PROCESS_FROM = 50_000  # replays this long format their output in a child process (~0.5 s to start)
FEEDBACK_POLL_S = 0.5  # how often the feedback file is looked at while streaming
BYTES_PER_LINE = 30  # a timestamp,value line, for guessing a file's length


@dataclass(frozen=True)
class StreamOptions:
    """What to stream and where its results go: ``stream.py``'s flags (see ``stream.py --help``)."""

    source: str = "sim"  # sim, a CSV file, - (stdin) or tcp://HOST:PORT
    models: str = DEFAULT_MODELS
    limit: int | None = None  # input points, then stop
    rate: float | None = None  # points per second; 0: as fast as possible; None: 20 for sim, else 0
    output: str | None = None  # .jsonl, .csv or - (stdout)
    no_plot: bool = False
    plot: str | None = None  # a PNG to draw into instead of a window
    log: str | None = None  # the incident log (None: the settings' log_file)
    alerts: str | None = None  # a JSON Lines file of incident events
    alert_webhook: str | None = None
    quarantine: str = "quarantine.jsonl"
    gaps: str | None = None  # fill or quarantine (None: the settings')
    no_adapt: bool = False
    no_refit: bool = False
    state: str | None = None  # a folder for the stream's state (see anomaly.online.state)
    series_column: str | None = None  # a CSV source's column of series keys (None: "series" when there is one)
    evict_after: float | None = None  # seconds a series may be silent before it is let go (None: the settings')
    feedback: str | None = None
    allow_remote: bool = False
    auth_token: str | None = None
    limits: Limits = field(default_factory=Limits)  # the TCP server's
    time_column: str = "timestamp"
    value_column: str = "value"
    time_format: str = "auto"
    seed: int = 1  # the simulator's
    family: str | None = None  # the simulator's kind of metric (None: the run's, else the settings')
    quick: bool = False  # train tiny models if there is no run
    quiet: bool = False  # no incident lines on the console
    dashboard: str | None = None  # [HOST:]PORT to serve the live dashboard on (see anomaly.dashboard)


class Pipeline:
    """One stream, from its source to its sinks (see the module)."""

    def __init__(self, config: Config, options: StreamOptions | None = None):
        self.config = config
        self.options = options or StreamOptions()

    def run(self) -> int:
        """Stream until the source ends or a stop is asked for; print the summary; return the exit status."""
        return run_stream(self.options, self.config)


def _load_or_train(options, config: Config):
    """Return the run's ensemble (the first series' of a many-series run), its manifest, and the ensembles by
    series key of a many-series run (``None`` for a run of one series)."""
    from ..model.runs import latest_run, load_series

    models = Path(options.models)
    if not (models / "manifest.json").is_file() and latest_run(models) is None:
        print(f"No trained models in {models}/: training the default models first "
              f"({'seconds' if options.quick else 'about 20 seconds'})...", file=sys.stderr)
        train_and_save(config, models)
    try:
        ensembles, manifest = load_series(models)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UserError(f"cannot load the run in {models}: {exc}") from None
    if "series" not in manifest:
        return ensembles[""], manifest, None
    return next(iter(ensembles.values())), manifest, ensembles


def _points_before(saved: bytes | None) -> int:
    """Input points a saved stream had seen (0 without one)."""
    from .state import unpack

    return 0 if saved is None else int(unpack(saved)[0]["runner"][1]["counts"]["points"])


def _open_source(options, config: Config, ensemble, manifest, rate: float, resumed: int = 0):
    """Return the chunks of ``options.source``: blocks when replaying at full speed, single points when paced."""
    from ..io import sources

    if options.source == "sim":
        from ..model.runs import run_config, simulator_start

        simulator = config.simulator
        if options.family is None and simulator_start(manifest):  # the run's own simulated metric goes on
            simulator = dataclasses.replace(simulator, family=run_config(manifest, config).simulator.family)
        return sources.simulator_chunks(simulator, options.seed, simulator_start(manifest) + resumed,
                                        config.stream.batch if rate == 0 else 1)
    start = float(ensemble.grid.timestamp(0)) if ensemble.grid else 0.0
    if options.source == "-":
        # paced: one line per chunk, so that --rate paces points; else whatever has queued up
        return sources.stdin_chunks(ensemble.grid.interval, start, 1 if rate > 0 else config.stream.batch,
                                    options.time_format)
    path = Path(options.source)
    if not path.is_file():
        raise UserError(f"--source {options.source}: no such file (use sim, a CSV file, or -)")
    try:
        series = options.series_column or ("series" if "series" in sources.csv_header(path) else None)
        return sources.csv_chunks(path, options.time_column, options.value_column,
                                  chunk_bytes=sources.REPLAY_BYTES if rate == 0 else 0, time_format=options.time_format,
                                  series_column=series)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


def run_stream(options: StreamOptions, config: Config) -> int:
    """Stream ``options.source`` through the latest run; print a summary; return the exit status."""
    from ..feedback import FeedbackFile
    from ..io.alarms import AlarmFilter
    from ..io.plot import LivePlot, has_display
    from ..io.sink_process import SinkProcess, make_sinks
    from ..io.sinks import QuarantineSink
    from .keyed import in_input_order, of_series
    from .signals import GracefulStop, StopRequested

    ensemble, manifest, by_series = _load_or_train(options, config)
    if by_series is not None and options.source.startswith("tcp://"):
        raise UserError(f"run {manifest['run']} holds {len(by_series)} series: stream them from a file or stdin that "
                        "names each point's series (the TCP server serves one series per client)")
    saved = _saved_state(options) if by_series is None else None
    if saved is not None:
        ensemble, manifest = _run_of_state(options, saved, ensemble, manifest)
    rate = options.rate if options.rate is not None else config.stream.rate_hz if options.source == "sim" else 0.0
    runners: list = []  # one per stream: the TCP source has one per client
    feed = _feed(options, config, ensemble, manifest, rate, runners, saved)
    specs = [("output", options.output)] if options.output else []
    try:
        sinks = make_sinks(specs)  # opened here, so that a bad path is an error before streaming
        alerts = _alert_sinks(options, config)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    cooldown = config.alerts.cooldown or config.windows.size
    filters: dict = {}  # one alarm filter per stream (per runner)
    resumed = None  # the counts and incidents a saved state brought: the summary tells this run's apart
    if saved is not None:
        alarm = filters[runners[0]] = _restore(options, runners[0], saved,
                                               AlarmFilter(config.alerts.k, config.alerts.n, cooldown))
        resumed = copy.deepcopy(runners[0].counts), alarm.count
    if rate == 0 and _expected_points(options) >= SINK_PROCESS_FROM:
        for sink in sinks:  # a long replay writes from a child process, beside the scoring
            sink.close()
        sinks = [SinkProcess(specs)]
    if not options.no_plot:
        png = options.plot
        if png is None and not has_display():
            png = "anomaly.png"
            print("no display found: the plot goes to anomaly.png (use --no-plot to skip it)", file=sys.stderr)
        sinks.append(LivePlot(config.stream.plot_points, png, title=str(options.source)))
    quarantine = QuarantineSink(options.quarantine)
    feedback = FeedbackFile(options.feedback or config.stream.feedback)
    dashboard = _dashboard(options, ensemble, sinks, alerts, feedback.path) if options.dashboard else None
    if options.no_adapt and feedback.path.is_file():
        print(f"note: {feedback.path} is not applied with --no-adapt (train.py --feedback applies it)",
              file=sys.stderr)
    # One thread reads, scores and writes in turn. Python threads for parsing or formatting
    # were measured to slow scoring far more than they save: scoring hands the GIL back and
    # forth thousands of times per block and waits each time for a busy thread to let go.
    print(f"streaming {options.source} with run {manifest['run']} "
          f"(target false-alarm rate {ensemble.target_far:g}); Ctrl-C to stop", file=sys.stderr)
    stopped = ""  # why the stream ended early, if it did
    started = time.perf_counter()
    next_poll = 0.0
    ended = Ended()  # streams that are over (TCP clients gone): counted, their runners let go
    keyed = plotted = None  # many series in one stream: their runners (anomaly.online.keyed), the series drawn
    with GracefulStop() as stop:  # Ctrl-C, SIGTERM: finish what was read, then stop
        total = _replay_total(options) if progress.active() else None
        counted = total is not None or options.source == "-"  # not a live simulator, nor TCP clients
        with progress.task(f"streaming {Path(options.source).name}", total, "points", shown=counted) as bar:
            chunks = iter(feed)
            try:
                while True:
                    try:
                        with stop.waiting():  # a signal interrupts the wait for input, never a chunk being scored
                            runner, chunk, reply = next(chunks)
                    except (StopIteration, StopRequested):
                        break
                    if chunk is None:  # a stream is over: close its incidents, keep its counts, let its runner go
                        for event in ended.add(runner, filters.pop(runner, None), runners):
                            for sink in alerts:
                                sink.write(event)
                        continue
                    if (now := time.monotonic()) >= next_poll and not options.no_adapt:  # a stat() twice a second
                        next_poll = now + FEEDBACK_POLL_S
                        _apply_feedback(feedback, runners + (keyed.runners() if keyed else []))
                    if reply is None and (keyed is not None or chunk.series is not None or by_series is not None):
                        if keyed is None:  # many series in one stream
                            keyed = _keyed(options, config, runner, cooldown, by_series)
                            plotted = chunk.series[0] if chunk.series else ""
                            print(f"points name their series: each series is scored on its own (the plot shows "
                                  f"{plotted or 'the unnamed one'})", file=sys.stderr)
                            for sink in sinks:
                                if isinstance(sink, LivePlot):
                                    sink.title = f"{sink.title}, series {plotted}"
                        results = keyed.process(chunk)
                        bar.count(len(chunk) + len(chunk.rejected))
                        for line in sorted((r for result in results for r in result.rejected), key=lambda r: r.position):
                            quarantine.write(line)
                        if (block := in_input_order(results)) is not None:
                            for sink in sinks:
                                if not isinstance(sink, LivePlot):
                                    sink.write_block(block)
                        for result in results:
                            for sink in sinks:
                                if isinstance(sink, LivePlot) and (drawn := of_series(result, plotted)) is not None:
                                    sink.write_block(drawn)
                            for event in result.events:
                                for sink in alerts:
                                    sink.write(event)
                        if stop.requested:
                            break
                        continue
                    block, rejected = runner.process(chunk)
                    bar.count(len(chunk) + len(rejected))
                    for line in rejected:
                        quarantine.write(line)
                    for sink in sinks:
                        sink.write_block(block)
                    if reply is not None:
                        reply(block, rejected)
                    alarm = filters.setdefault(runner, AlarmFilter(config.alerts.k, config.alerts.n, cooldown))
                    for event in alarm.update(block):
                        for sink in alerts:
                            sink.write(event)
                    if stop.requested:
                        break
            except BrokenPipeError:  # the reader of our output went away (| head): stop quietly
                stopped = "stopped: the output was closed"
            except OSError as exc:  # a full disk, say: in one line, after closing what can be closed
                _close_all(sinks + [quarantine])
                raise UserError(f"writing the output failed: {exc}") from None
            finally:
                feed.close()
                for runner in runners:
                    runner.close()
                if keyed is not None:
                    keyed.close()
        if stop.requested:
            stopped = "stopped" if stop.signum == signal.SIGINT else "stopped by SIGTERM"
        stop.finishing = True  # a second Ctrl-C now stops waiting for the output to be written
        if keyed is not None:
            _finish_keyed(options, keyed, ensemble, sinks, quarantine, alerts, stopped, time.perf_counter() - started)
        else:
            if options.state:
                _save_state(options, runners[0], filters.get(runners[0]), manifest)
            _finish(options, ensemble, sinks, quarantine, alerts, filters, ended, runners, stopped,
                    time.perf_counter() - started, resumed)
    if dashboard is not None:
        dashboard.stop()
    return stop.exit_code or 0


def _keyed(options: StreamOptions, config: Config, template, cooldown: int, by_series: dict | None = None):
    """Return the runners of a stream of many series: each series' a copy of ``template``'s settings, with
    the series' own ensemble when the run has one per series (``by_series``; a series it lacks is rejected)."""
    from ..io.alarms import AlarmFilter
    from .keyed import KeyedRunners
    from .runner import Runner

    gaps = template._gaps
    evict_after = options.evict_after if options.evict_after is not None else config.stream.evict_after_s
    adapt = None if options.no_adapt else dataclasses.replace(config.adapt, refit=False)  # no refits: less kept

    def make_runner(key: str) -> Runner | None:  # refits retrain one series' models: not for a stream of many (yet)
        ensemble = template.ensemble if by_series is None else by_series.get(key)
        if ensemble is None:
            return None
        return Runner(ensemble, gaps.mode, gaps.max_fill, adapt, future_horizon=template.future_horizon)

    return KeyedRunners(make_runner, lambda key: AlarmFilter(config.alerts.k, config.alerts.n, cooldown, series=key),
                        idle_after=evict_after or None, state_dir=options.state)


def _finish_keyed(options, keyed, ensemble, sinks, quarantine, alerts, stopped: str, seconds: float) -> None:
    """Save or close what is open, and print the summary of a stream of many series."""
    if options.state:
        saved = keyed.save_all()
        print(f"state of {saved} series saved to {options.state} (open incidents go on after a restart)",
              file=sys.stderr)
    else:
        for event in keyed.close_incidents():
            for sink in alerts:
                sink.write(event)
    problems = _close_all(sinks + [quarantine] + alerts)
    total = keyed.counts()
    _summary(total.since(keyed.carried), ensemble, options, stopped, seconds)  # this run's
    print(f"{keyed.seen} series ({len(keyed.active)} active at the end, {keyed.evicted} let go while idle, "
          f"{keyed.restored} brought back from saved state); {keyed.incidents() - keyed.carried_incidents} incidents",
          file=sys.stderr)
    if keyed.unknown:
        names = sorted(keyed.unknown)
        print(f"{len(names)} series not in the run, their points quarantined: {', '.join(names[:5])}"
              + (", ..." if len(names) > 5 else ""), file=sys.stderr)
    if keyed.carried.points:
        print(f"since the state began: {total.points:,} points, {total.anomalies:,} anomalies, "
              f"{keyed.incidents()} incidents", file=sys.stderr)
    for problem in problems:
        print(f"stream.py: warning: {problem}", file=sys.stderr)


def _dashboard(options, ensemble, sinks: list, alerts: list, feedback):
    """Serve the dashboard (``--dashboard``) beside the stream, fed as a sink and an alert sink; return it."""
    from ..dashboard import Board, check_remote, parse_address, serve

    try:
        host, port = parse_address(options.dashboard)
        check_remote(host, options.allow_remote)
        board = Board(alpha=ensemble.target_far)
        served = serve(board, host, port, str(feedback))
    except (OSError, ValueError) as exc:
        raise UserError(f"--dashboard {options.dashboard}: {exc}") from None
    sinks.append(board)
    alerts.append(board)
    print(f"dashboard on {served.url}", file=sys.stderr)
    return served


def _saved_state(options) -> bytes | None:
    """Return the snapshot in ``--state DIR`` (``None``: no --state, or nothing saved yet)."""
    from . import state

    if not options.state:
        return None
    if options.source.startswith("tcp://"):
        raise UserError("--state keeps one stream's state: the TCP server's clients are many streams")
    try:
        return state.read(options.state)
    except OSError as exc:
        raise UserError(f"--state {options.state}: {exc}") from None


def _run_of_state(options, saved: bytes, ensemble, manifest):
    """Return the run the saved state was taken with (a refit may have made it), loaded."""
    from ..model.runs import load_run
    from .state import SnapshotError, peek

    try:
        run = peek(saved).get("run", manifest["run"])
    except SnapshotError as exc:
        raise UserError(f"--state {options.state}: {exc}") from None
    if run == manifest["run"]:
        return ensemble, manifest
    models = Path(options.models)
    folder = models.parent if (models / "manifest.json").is_file() else models
    try:
        return load_run(folder / run)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise UserError(f"--state {options.state}: it was saved with run {run}, which cannot be loaded from {folder}: "
                        f"{exc}") from None


def _restore(options, runner, saved: bytes, alarm):
    """Restore ``runner`` and its alarm filter from the saved state; return the filter."""
    from .state import SnapshotError

    try:
        extra, _ = runner.restore(saved)
        if "alarms" in extra:
            alarm.load_state(*extra["alarms"])
    except SnapshotError as exc:
        raise UserError(f"--state {options.state}: the saved state cannot be used here: {exc} "
                        "(move it away to start afresh)") from None
    print(f"resumed from {options.state}: {runner.counts.points:,} points seen before", file=sys.stderr)
    return alarm


def _save_state(options, runner, alarm, manifest: dict) -> None:
    """Write the stream's snapshot into ``--state DIR`` (atomically), with the run it was taken with."""
    from . import state

    refitter = runner.refitter
    run = Path(refitter.last_run).name if refitter is not None and refitter.last_run else manifest["run"]
    extra = {"alarms": alarm.state()} if alarm is not None else {}
    try:
        path = state.write(options.state, runner.snapshot(extra, {"run": run, "source": options.source}))
    except OSError as exc:
        print(f"stream.py: warning: the state was not saved: {exc}", file=sys.stderr)
        return
    print(f"state saved to {path}" + (" (with its open incident)" if alarm is not None and alarm.open else ""),
          file=sys.stderr)


def _finish(options, ensemble, sinks, quarantine, alerts, filters, ended, runners, stopped, seconds,
            resumed=None) -> None:
    """Close what is still open (incidents, sinks) and print the summary of a stream.

    With ``--state`` the open incident is not closed: it goes on after the restart. ``resumed``:
    the counts and incident count the saved state started from (the summary is this run's)."""
    still_open = sum(alarm.open is not None for alarm in filters.values())
    if not options.state:
        for event in (e for alarm in filters.values() for e in alarm.close()):  # the end closes what is open
            for sink in alerts:
                sink.write(event)
    problems = _close_all(sinks + [quarantine] + alerts)
    total = _total(runners, ended.counts)
    _summary(total.since(resumed[0]) if resumed else total, ensemble, options, stopped, seconds)
    incidents = sum(alarm.count for alarm in filters.values()) + ended.incidents - (resumed[1] if resumed else 0)
    kept = "kept open in the state" if options.state else "still open at the end"
    print(f"{incidents} incidents" + (f" ({still_open} {kept})" if still_open else ""), file=sys.stderr)
    if resumed:
        print(f"since the state began: {total.points:,} points, {total.anomalies:,} anomalies, "
              f"{sum(alarm.count for alarm in filters.values())} incidents", file=sys.stderr)
    for sink in alerts:
        if hasattr(sink, "failed"):
            print(f"webhook: {sink.delivered} alerts delivered, {sink.failed} not delivered (all are in the log)",
                  file=sys.stderr)
    refitters = [r.refitter for r in runners if r.refitter is not None]
    if any(r.refits or r.failures or r.abandoned for r in refitters):
        latest = next((r.last_run for r in reversed(refitters) if r.last_run), "")
        skipped, abandoned = sum(len(r.failures) for r in refitters), sum(r.abandoned for r in refitters)
        print(f"models retrained {sum(r.refits for r in refitters)} times"
              + (f" (the last saved as {latest})" if latest else "")
              + (f"; {skipped} refits skipped" if skipped else "")
              + (f"; {abandoned} still training at the end, dropped (a refit uses only idle CPU)" if abandoned else ""),
              file=sys.stderr)
    for problem in problems:
        print(f"stream.py: warning: {problem}", file=sys.stderr)


def _apply_feedback(feedback, runners: list) -> None:
    """Hand the labels added to the feedback file since the last look to every stream, saying so."""
    from ..io.data import format_timestamp

    labels = feedback.poll()
    for problem in feedback.problems:
        print(f"stream.py: warning: feedback {problem}", file=sys.stderr)
    feedback.problems.clear()
    for label in labels:
        covered = sum(runner.feedback([label]) for runner in runners)
        print(f"feedback: {label.kind.replace('_', ' ')} {format_timestamp(label.start)} to "
              f"{format_timestamp(label.end)}: {covered} recent points relabelled"
              + ("; it also applies to points to come" if covered == 0 else ""), file=sys.stderr)


def _feed(options, config: Config, ensemble, manifest, rate: float, runners: list, saved: bytes | None = None):
    """Open the source now (a bad one is a one-line error) and return an iterator of ``(runner, chunk, reply)``:
    the chunks, the runner of their stream, and how to answer their sender (``None`` but for TCP).
    New runners are appended to ``runners``."""
    from ..io.sources import limited, paced
    from .runner import Runner

    # a replay (a file or the simulator at full speed) refits where the data says and waits for it there, so
    # its verdicts do not depend on the machine's load; a live stream refits in the background
    replay = rate == 0 and options.source != "-" and not options.source.startswith("tcp://")

    def new_runner(refit: bool = False) -> Runner:
        # without refits the adapter keeps no input values and thins its history (see adapt.KeptPoints), as each
        # of many series does: a stream gives the same verdicts alone and among others
        adapt = (None if options.no_adapt else config.adapt if refit
                 else dataclasses.replace(config.adapt, refit=False))
        refitter = (_refitter(options, config, manifest, background=not replay)
                    if refit and adapt is not None and adapt.refit else None)
        horizon = None if options.source == "sim" else config.stream.future_horizon_s  # the simulator keeps its own time
        runners.append(Runner(ensemble, options.gaps or config.stream.gaps, config.stream.max_fill, adapt, refitter,
                              future_horizon=horizon))
        return runners[-1]

    if options.source.startswith("tcp://"):  # several streams, one models folder: recalibration only
        return _tcp_feed(options, ensemble, new_runner)
    resumed = _points_before(saved) if options.source == "sim" else 0  # the simulator goes on from there
    chunks = paced(limited(_open_source(options, config, ensemble, manifest, rate, resumed), options.limit), rate)
    runner = new_runner(refit=not options.no_refit)
    return ((runner, chunk, None) for chunk in chunks)


def _refitter(options, config: Config, manifest: dict, background: bool = True):
    """Return the refitter of a stream: the run's own settings, its refits saved beside it in the models folder.

    ``background=False``: each refit trains in this process at the point the adapter asked for it,
    and the stream waits for it there (replays: the same verdicts whatever the load)."""
    from ..model.runs import run_config
    from .refit import Refitter

    settings = run_config(manifest, fallback=config)  # an older run without its settings: today's
    models = Path(options.models)
    folder = models.parent if (models / "manifest.json").is_file() else models
    return Refitter(settings, folder, manifest.get("data", {}).get("refit_of") or manifest["run"],
                    manifest.get("points", 0), background=background)


def _tcp_feed(options, ensemble, new_runner):
    from ..io.server import LineServer, feed, is_loopback, parse_address

    try:
        host, port = parse_address(options.source)
    except ValueError as exc:
        raise UserError(f"--source {options.source}: {exc}") from None
    if not is_loopback(host):
        if not options.allow_remote:
            raise UserError(f"--source {options.source}: {host} is not loopback: every machine that can reach it would "
                            "be served; add --allow-remote (and --auth-token) if that is what you want")
        print(f"warning: serving {host}, not loopback: any client that can reach this port is served"
              + ("; each must send AUTH first" if options.auth_token else ", without authentication (see --auth-token)"),
              file=sys.stderr)
    try:
        server = LineServer(host, port, ensemble.grid.interval, float(ensemble.grid.timestamp(0)), options.time_format,
                            options.limits, options.auth_token or None)
    except OSError as exc:
        raise UserError(f"--source {options.source}: {exc}") from None
    host, port = server.address
    print(f"listening on tcp://{host}:{port}; send lines with: python -m anomaly.client tcp://{host}:{port}",
          file=sys.stderr)

    def chunks():
        left = options.limit
        try:
            for runner, chunk, reply in feed(server, new_runner):
                yield runner, chunk, reply
                if left is not None and chunk is not None:
                    left -= len(chunk) + len(chunk.rejected)
                    if left <= 0:
                        return
        finally:
            server.close()

    return chunks()


def _total(runners: list, ended=None):
    """Return the counts of all runners added up (and ``ended``, the counts of streams already over)."""
    from .runner import Counts

    total = Counts()
    for counts in [runner.counts for runner in runners] + ([ended] if ended is not None else []):
        total = total.plus(counts)
    return total


class Ended:
    """What remains of streams that are over: their counts and incidents, for the summary."""

    def __init__(self):
        from .runner import Counts

        self.counts = Counts()
        self.incidents = 0

    def add(self, runner, alarm, runners: list) -> list:
        """Fold ``runner``'s counts in, let it go; return the events that close its open incident."""
        self.counts = _total([runner], self.counts)
        runner.close()
        runners.remove(runner)
        if alarm is None:
            return []
        events = alarm.close()
        self.incidents += alarm.count
        return events


def _alert_sinks(options, config: Config) -> list:
    """Return the incident sinks: the console (unless --quiet), the log, and the optional JSON Lines and webhook."""
    from ..io.alerts import ConsoleAlerts, JsonlAlerts, LogAlerts, WebhookAlerts

    sinks = [] if options.quiet else [ConsoleAlerts(sys.stderr if options.output == "-" else sys.stdout)]
    sinks.append(LogAlerts(options.log or config.stream.log_file))
    if path := options.alerts or config.alerts.jsonl:
        sinks.append(JsonlAlerts(path))
    if url := options.alert_webhook or config.alerts.webhook:
        sinks.append(WebhookAlerts(url))
    return sinks


def _close_all(sinks: list) -> list[str]:
    """Close every sink, even when one fails; return what went wrong, one line each."""
    problems = []
    for sink in sinks:
        try:
            sink.close()
        except BrokenPipeError:
            pass  # the output was closed: nothing more to say there
        except OSError as exc:
            problems.append(f"closing the output: {exc}")
        except KeyboardInterrupt:  # a second Ctrl-C while the output process finishes
            getattr(sink, "abort", lambda: None)()
            problems.append("interrupted while writing the output: the last records may be missing")
    return problems


def _expected_points(options) -> float:
    """Return about how many points ``options.source`` will deliver (infinite for the simulator)."""
    if options.source == "-" or options.source.startswith("tcp://"):
        return 0
    known = math.inf if options.source == "sim" else Path(options.source).stat().st_size / BYTES_PER_LINE
    return min(known, options.limit or math.inf)


def _replay_total(options) -> int | None:
    """Return how many input points ``options.source`` holds, if that is known (a file, a limited simulator)."""
    if options.source == "-" or options.source.startswith("tcp://"):
        return None
    if options.source == "sim":
        return options.limit
    lines = 0
    with open(options.source, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return min(max(lines - 1, 0), options.limit or math.inf)  # less the header


def _summary(c, ensemble, options, stopped: str, seconds: float) -> None:
    scored = c.points - c.warmup
    rate = c.anomalies / scored if scored else 0.0
    lines = [(stopped or "done") + f": {c.points} points seen ({c.warmup} warm-up), "
             f"{c.anomalies} anomalies ({rate:.2%} of scored points; false-alarm target "
             f"{ensemble.target_far:g} of normal points)",
             f"{c.points + c.rejected} input lines in {seconds:.1f} s "
             f"({(c.points + c.rejected) / max(seconds, 1e-9):,.0f} per second)"]
    if c.rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(c.by_reason.items()))
        lines.append(f"{c.rejected} input lines rejected ({reasons}); kept in {options.quarantine}")
    if ensemble.grid.sequence:
        lines.append("sequence mode: the run's history was too irregular for a time grid, so points are taken "
                     "in the order of their timestamps and gaps are never filled")
    if c.filled or c.restarts:
        lines.append(f"gaps: {c.filled} missing points filled (status 'filled'), "
                     f"{c.restarts} gaps too long to fill (warm-up started again)")
    if options.output and options.output != "-":
        lines.append(f"records written to {options.output}")
    print("\n".join(lines), file=sys.stderr)
