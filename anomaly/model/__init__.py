"""The model: windows and scaling, the calibrated ensemble, training and the runs saved in ``models/``.

:mod:`.windows` (time grid, scaler), :mod:`.rolling` (compiled rolling statistics),
:mod:`.seasonality`, :mod:`.calibration` (scores to p-values), :mod:`.ensemble` (detectors
combined), :mod:`.training` (fit and calibrate), :mod:`.trainer` (train from the CLI's
inputs and save), :mod:`.runs` (hashed, atomic runs on disk), and the detectors
(:mod:`.detectors`).
"""
