"""The dashboard's web app (Starlette, served by uvicorn): the page, its JSON API and server-sent events.

- ``GET /``: the page (``static/index.html``, uPlot vendored beside it: no CDN, no build step).
- ``GET /api/series?q=``: every series (those with open incidents first), filtered by name.
- ``GET /api/series/{id}?since=``: a series' kept points after ``since`` (epoch seconds).
- ``GET /api/incidents?series=``: the kept incidents, open ones first.
- ``GET /events``: server-sent events: ``update`` with the board's version when it changed.
- ``POST /api/feedback``: ``{"label": "false_alarm"|"anomaly", "start", "end"[, "incident", "series"]}``
  appended to the feedback file the stream follows.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from .buffer import Board

STATIC = Path(__file__).parent / "static"
EVENT_EVERY_S = 0.5  # how often a browser's event stream looks for changes (it never waits on the scoring)


def create_app(board: Board, feedback: str | Path = "feedback.jsonl"):
    """Return the ASGI app of ``board``; feedback from the page is appended to ``feedback``."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from ..feedback import append_label
    from ..io.data import parse_timestamp

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def series_list(request):
        return JSONResponse(board.series_list(request.query_params.get("q", "")))

    async def series(request):
        since = request.query_params.get("since")
        try:
            since = float(since) if since not in (None, "") else None
        except ValueError:
            return JSONResponse({"error": "since must be epoch seconds"}, status_code=400)
        points = board.points(request.path_params["key"], since)
        if points is None:
            return JSONResponse({"error": "no such series"}, status_code=404)
        return JSONResponse(points)

    async def incidents(request):
        return JSONResponse(board.incident_list(request.query_params.get("series")))

    async def events(request):
        async def stream():
            seen = -1
            while not await request.is_disconnected():
                if board.version != seen:
                    seen = board.version
                    yield f"event: update\ndata: {json.dumps({'version': seen})}\n\n"
                await asyncio.sleep(EVENT_EVERY_S)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def post_feedback(request):
        try:
            body = await request.json()
            kind = str(body.get("label", "")).replace("-", "_")
            start = _time(body.get("start"), parse_timestamp)
            end = _time(body.get("end", body.get("start")), parse_timestamp)
            incident = body.get("incident")
            record = append_label(feedback, kind, start, end, int(incident) if incident is not None else None,
                                  str(body.get("note", "")), body.get("series"))
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(record)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/series", series_list),
        Route("/api/series/{key:path}", series),
        Route("/api/incidents", incidents),
        Route("/api/feedback", post_feedback, methods=["POST"]),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])


def _time(value, parse) -> float:
    """Epoch seconds of a JSON time: a number (seconds or milliseconds) or an ISO 8601 text."""
    if isinstance(value, bool) or value is None:
        raise ValueError("start and end are needed")
    if isinstance(value, (int, float)):
        seconds = float(value / 1000.0 if abs(value) > 1e11 else value)
    else:
        seconds = parse(str(value))
    if not math.isfinite(seconds):
        raise ValueError("start and end must be finite times")
    return seconds
