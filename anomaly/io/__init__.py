"""Input and output: what flows (chunks of points, blocks of decisions), where it comes from and goes.

Parsing (:mod:`.parse`), sources (files, stdin, the simulator: :mod:`.sources`; TCP:
:mod:`.server`), a user's history (:mod:`.data`), sinks for decisions (:mod:`.sinks`,
:mod:`.sink_process`, the live plot :mod:`.plot`), incidents (flags grouped, :mod:`.alarms`) and
their alerts (:mod:`.alerts`).
The feedback file and its command are :mod:`anomaly.feedback`.
"""
