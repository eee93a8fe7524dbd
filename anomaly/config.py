"""Settings as frozen dataclasses, loaded from one TOML file.

Every section of ``anomaly.example.toml`` maps to one dataclass below; a key that is
not a field is an error (a typo must not be silently ignored). CLI flags override the
file by calling :func:`dataclasses.replace` on the loaded object.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SimulatorConfig:
    """The built-in synthetic metric: 10-minute samples with a daily and a weekly cycle."""

    family: str = "smooth"  # the kind of metric (anomaly.families): smooth, bursty, counts, heavytail, steps, bounded
    interval_s: int = 600
    period: int = 144  # points per day at the default interval
    level: float = 50.0
    trend_per_day: float = 0.05
    daily_amplitude: float = 10.0
    weekly_amplitude: float = 3.0
    noise_sd: float = 1.0
    noise_ar: float = 0.3  # AR(1) coefficient: real metrics have correlated noise
    anomaly_gap: tuple[int, int] = (250, 600)  # points between injected anomalies
    drift_gap: tuple[int, int] = (3000, 6000)  # points between drift events, when enabled


@dataclass(frozen=True)
class WindowConfig:
    """How many points each detector sees (the window ends at the point being scored)."""

    size: int = 32
    shesd_size: int = 0  # 0: one seasonal period, clipped to [64, 512]


@dataclass(frozen=True)
class DenseAEConfig:
    hidden: int = 32
    bottleneck: int = 6
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 2e-3


@dataclass(frozen=True)
class LSTMAEConfig:
    units: int = 24
    epochs: int = 8
    batch_size: int = 128
    learning_rate: float = 3e-3


@dataclass(frozen=True)
class IForestConfig:
    n_estimators: int = 200
    max_samples: int = 512
    recent: int = 8  # points used for the short-range features (local spread, steps)


@dataclass(frozen=True)
class SHESDConfig:
    alpha: float = 0.05
    max_anoms: float = 0.1  # fraction of the window the generalised ESD may remove
    direction: str = "both"  # "both", "pos" or "neg"
    stl_periods: int = 14  # STL is fitted on at most this many periods of training data


@dataclass(frozen=True)
class OCSVMConfig:
    nu: float = 0.05  # share of training windows the SVM may leave outside
    n_components: int = 100  # Nystroem kernel approximation size
    gamma: float = 0.0  # RBF width on standardised features; 0: one over the number of features
    recent: int = 8


@dataclass(frozen=True)
class KMeansConfig:
    n_clusters: int = 16
    recent: int = 8


@dataclass(frozen=True)
class ZScoreConfig:
    pass  # the window (windows.size) is all a rolling robust z-score needs


@dataclass(frozen=True)
class EWMAConfig:
    alpha: float = 0.3  # weight of the newest point in the moving average


@dataclass(frozen=True)
class HoltWintersConfig:
    pass  # smoothing constants and the seasonal profile are fitted by statsmodels


@dataclass(frozen=True)
class ADWINConfig:
    delta: float = 0.002  # ADWIN's confidence: the chance of calling a change where there is none
    min_part: int = 4  # fewest points on either side of a split


@dataclass(frozen=True)
class RepeatsConfig:
    pass  # the repeat rate of each value is learned; the window bounds the run counted


@dataclass(frozen=True)
class DetectorsConfig:
    dense_ae: DenseAEConfig = field(default_factory=DenseAEConfig)
    lstm_ae: LSTMAEConfig = field(default_factory=LSTMAEConfig)
    iforest: IForestConfig = field(default_factory=IForestConfig)
    shesd: SHESDConfig = field(default_factory=SHESDConfig)
    ocsvm: OCSVMConfig = field(default_factory=OCSVMConfig)
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    zscore: ZScoreConfig = field(default_factory=ZScoreConfig)
    ewma: EWMAConfig = field(default_factory=EWMAConfig)
    holt_winters: HoltWintersConfig = field(default_factory=HoltWintersConfig)
    adwin: ADWINConfig = field(default_factory=ADWINConfig)
    repeats: RepeatsConfig = field(default_factory=RepeatsConfig)


@dataclass(frozen=True)
class EnsembleConfig:
    """Which registered detectors the ensemble holds (train.py --detectors overrides).

    The default was chosen by measurement on the simulator and on NAB (README, "Choosing the
    detectors"): it ties the deep ensemble on the simulator and beats it on NAB, at twice the speed.
    """

    detectors: tuple[str, ...] = ("dense_ae", "shesd", "holt_winters", "ewma")


@dataclass(frozen=True)
class CalibrationConfig:
    """Target false-alarm rate and how the held-out normal data is split."""

    target_far: float = 1e-3  # flagged fraction of normal points we promise
    combine: str = "cauchy"  # "cauchy" or "bonferroni"
    train_fraction: float = 0.35
    detector_cal_fraction: float = 0.15  # per-detector calibrators
    # the combined statistic's calibrator sets the threshold: a 1e-3 promise needs
    # thousands of held-out points, so it gets the largest held-out share
    ensemble_cal_fraction: float = 0.35
    # the rest is validation: the measured false-alarm rate in the manifest


@dataclass(frozen=True)
class TrainingConfig:
    n_points: int = 40_000  # simulated normal points when no --data is given
    seed: int = 0
    period: int = 0  # 0: detect from the data
    warp: str = "none"  # variance-stabilising transform: none, sqrt, log, or auto (chosen from the history)


@dataclass(frozen=True)
class StreamConfig:
    rate_hz: float = 20.0  # simulator pace; 0 = as fast as possible
    batch: int = 8192  # most points scored together: simulator at full speed, stdin when lines queue up
    log_file: str = "anomaly.log"
    plot_points: int = 500  # points kept in the live plot
    gaps: str = "fill"  # missing grid points: "fill" (interpolated, status "filled") or "quarantine"
    max_fill: int = 0  # longest gap filled, in points; 0: the longest detector window (beyond: warm-up again)
    feedback: str = "feedback.jsonl"  # labels read while streaming (see anomaly.feedback)
    future_horizon_s: float = 86_400.0  # a point stamped this far past the last one and the wall clock is quarantined
    evict_after_s: float = 3_600.0  # many series: one silent this long is let go (saved with --state); 0: never


@dataclass(frozen=True)
class AdaptConfig:
    """Adaptation to drift (anomaly.online.adapt); 0 means derived from the ensemble's windows."""

    enabled: bool = True  # stream.py --no-adapt turns it off
    history: int = 5000  # recent points kept to recalibrate from
    every: int = 1000  # recalibrate at least this often, in points
    min_points: int = 100  # admitted (normal) points needed to recalibrate (after a lasting change: since it)
    step: int = 256  # the adapter acts every this many points, replay and live alike (Adapter.boundary)
    gate: float = 0.1  # p below gate x the alarm threshold is confidently anomalous: it does not teach
    max_share: float = 0.1  # ...unless more than this share of recent points is: then that is the stream's pattern
    margin: int = 0  # points around a confident anomaly that do not teach; 0: the shortest detector window
    confirm: int = 0  # alarms lasting longer than this are a lasting change; 0: twice the longest window
    delta: float = 0.002  # ADWIN's confidence
    refit: bool = True  # retrain the models in the background (stream.py --no-refit turns it off)
    refit_history: int = 20_000  # recent points kept to retrain on
    refit_min: int = 2000  # admitted points needed, and points between two refits
    refit_every: int = 20_000  # retrain at least this often, in points


@dataclass(frozen=True)
class AlertsConfig:
    """Point flags -> incidents (see anomaly.io.alarms) and where they are sent."""

    k: int = 1  # an incident opens when k of the last n scored points are flagged
    n: int = 1
    cooldown: int = 0  # unflagged points that close an incident; 0: the window size (windows.size)
    jsonl: str = ""  # append incident events here as JSON Lines ("" = no file)
    webhook: str = ""  # POST incident events here ("" = none)


@dataclass(frozen=True)
class Config:
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    detectors: DetectorsConfig = field(default_factory=DetectorsConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)


def quick(config: Config) -> Config:
    """Return ``config`` shrunk to tiny models that train in seconds (demos and tests)."""
    det = config.detectors
    return dataclasses.replace(
        config,
        windows=dataclasses.replace(config.windows, size=16),
        detectors=dataclasses.replace(
            det,
            dense_ae=dataclasses.replace(det.dense_ae, hidden=16, bottleneck=4, epochs=4),
            lstm_ae=dataclasses.replace(det.lstm_ae, units=8, epochs=2),
            iforest=dataclasses.replace(det.iforest, n_estimators=50, max_samples=256),
        ),
        training=dataclasses.replace(config.training, n_points=20_000),
    )


def _build(cls, values: dict, where: str):
    """Instantiate dataclass ``cls`` from a TOML table, recursing into nested sections."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; allowed: {sorted(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"[{where}.{name}] must be a table")
            kwargs[name] = _build(type(current), value, f"{where}.{name}")
        elif isinstance(current, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """Return the :class:`Config` of a dict written by ``dataclasses.asdict`` (a run's manifest); ``ValueError`` if it does not fit."""
    try:
        return _build(Config, values, "config")
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read a TOML file into a :class:`Config`; ``None`` gives the defaults.

    Raises ``ValueError`` naming the section and key when the file has an unknown key,
    and ``FileNotFoundError`` when the path does not exist.
    """
    if path is None:
        return Config()
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    return _build(Config, data, "config")
