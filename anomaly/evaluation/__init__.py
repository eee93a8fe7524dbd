"""Evaluation: metrics of decisions against labels, the NAB scorer, recovery after events.

``python -m anomaly.evaluate`` (:mod:`anomaly.evaluate`) runs them; :mod:`.metrics`,
:mod:`.nab` and :mod:`.recovery` hold the measures.
"""
