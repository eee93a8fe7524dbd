"""``python -m anomaly.dashboard --output FILE --alerts FILE``: show a finished run from its files."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import DEFAULT_ADDRESS, Board, check_remote, parse_address, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anomaly.dashboard",
        description="Serve the dashboard of a finished run: its records (stream.py --output, JSON Lines) and its "
                    "incident events (stream.py --alerts). 'stream.py --dashboard' serves it live while streaming.")
    parser.add_argument("--output", required=True, metavar="JSONL", help="the records stream.py --output wrote")
    parser.add_argument("--alerts", metavar="JSONL", help="the incident events stream.py --alerts wrote")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, metavar="[HOST:]PORT",
                        help=f"where to serve it (default: {DEFAULT_ADDRESS})")
    parser.add_argument("--allow-remote", action="store_true", help="allow an address other than loopback")
    parser.add_argument("--feedback", default="feedback.jsonl", help="where the page's labels go")
    parser.add_argument("--points", type=int, default=5000, help="points kept per series (default: 5000)")
    args = parser.parse_args(argv)
    try:
        host, port = parse_address(args.address)
        check_remote(host, args.allow_remote)
        board = Board(points=args.points)
        with open(args.output, encoding="utf-8") as handle:
            board.add_records([json.loads(line) for line in handle if line.strip()])
        if args.alerts:
            with open(args.alerts, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        board.add_event(json.loads(line))
        served = serve(board, host, port, args.feedback)
    except (OSError, ValueError) as exc:
        print(f"python -m anomaly.dashboard: error: {exc}", file=sys.stderr)
        return 2
    print(f"dashboard on {served.url} ({len(board.series)} series); Ctrl-C to stop", file=sys.stderr)
    try:
        while served.thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
