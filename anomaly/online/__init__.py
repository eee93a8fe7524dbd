"""The online loop: one decision per arriving point, adapting as the stream goes.

:mod:`.runner` (one series: validation, gaps via :mod:`.gaps`, scoring), :mod:`.keyed`
(many series) and :mod:`.ticks` (one point of each, scored together), :mod:`.adapt` and
:mod:`.drift` (recalibration), :mod:`.refit` (retraining beside the stream), :mod:`.state`
(snapshots), :mod:`.pipeline` (the stream that ``stream.py`` runs), :mod:`.signals`
(stopping cleanly) and :mod:`.streamed` (a series streamed inline, for evaluation and refits).
"""
