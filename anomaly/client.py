"""Send a metric to a ``stream.py --source tcp://...`` server and print what comes back.

    python -m anomaly.client tcp://127.0.0.1:7777 --source metrics.csv --rate 0
    python -m anomaly.client tcp://127.0.0.1:7777                      # the simulator, 20 points/s

Lines go out as they are (a CSV file's lines, or the simulator's ``timestamp,value,label``),
paced at ``--rate``. Every reply is the decision on one line, or why the line was rejected.
Anomalies and rejections are printed, and all replies can be kept with ``--output``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator

from .io.data import format_timestamp
from .io.sources import paced


def file_lines(path: str) -> Iterator[str]:
    """Yield the lines of a text file (``-`` for stdin), header included: the server skips it."""
    handle = sys.stdin if path == "-" else open(path, encoding="utf-8-sig", errors="backslashreplace", newline="\n")
    with handle:
        for line in handle:  # only \n ends a line: a stray \r inside one is the server's to reject
            yield line.rstrip("\n")


def simulator_lines(seed: int, start_index: int) -> Iterator[str]:
    """Yield the simulator's points as ``timestamp,value,label`` lines, forever."""
    from .simulate import Simulator

    for point in Simulator(seed=seed, anomalies=True, start_index=start_index).points():
        yield f"{format_timestamp(point.timestamp)},{point.value:.6g},{int(bool(point.label))}"


def describe(reply: dict) -> str | None:
    """Return the line to print for a reply, or ``None`` for a normal point."""
    if "rejected" in reply:
        if "position" not in reply:  # the connection itself was refused
            return f"REFUSED by the server: {reply['rejected']}"
        return f"REJECTED line {reply['position']}: {reply['rejected']}  ({reply['raw'][:60]!r})"
    if reply.get("is_anomaly"):
        fired = ", ".join(f"{k[2:]} (p={v:.1e})" for k, v in reply.items() if k.startswith("p_") and k != "p_value"
                          and v < 1e-3)
        expected = f"{reply['expected']:.4g}" if reply.get("expected") is not None else "?"
        return (f"ANOMALY {reply['timestamp']}  value {reply['value']:.4g}  expected {expected}"
                f"  score {reply['score']:.2f}  p {reply['p_value']:.1e}  {fired}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anomaly.client", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("server", help="tcp://HOST:PORT, as stream.py printed it")
    parser.add_argument("--source", default="sim", help="sim (default), a CSV file, or - for stdin")
    parser.add_argument("--rate", type=float, help="lines per second; 0 = as fast as possible "
                                                    "(default: 20 for sim, 0 otherwise)")
    parser.add_argument("--limit", type=int, help="send at most N lines")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed (default: 1)")
    parser.add_argument("--start", type=int, default=40_000,
                        help="simulator point to start at (default: 40000, after the default training history)")
    parser.add_argument("--output", metavar="JSONL", help="keep every reply in this file")
    parser.add_argument("--auth-token", metavar="TOKEN", default=os.environ.get("ANOMALY_AUTH_TOKEN"),
                        help="the server's token, sent first as 'AUTH TOKEN' (default: $ANOMALY_AUTH_TOKEN)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)

    from .io.server import parse_address

    try:
        host, port = parse_address(args.server)
        sock = socket.create_connection((host, port), timeout=10)
    except (ValueError, OSError) as exc:
        print(f"client: error: cannot reach {args.server}: {exc}", file=sys.stderr)
        return 2
    sock.settimeout(None)
    rate = args.rate if args.rate is not None else (20.0 if args.source == "sim" else 0.0)
    lines = simulator_lines(args.seed, args.start) if args.source == "sim" else file_lines(args.source)
    lines = paced(itertools.islice(lines, args.limit), rate)
    if args.auth_token:
        lines = itertools.chain([f"AUTH {args.auth_token}"], lines)
    sent = [0]

    def send() -> None:  # the replies are read meanwhile on the main thread
        try:
            for line in lines:
                sock.sendall((line + "\n").encode())
                sent[0] += 1
            sock.shutdown(socket.SHUT_WR)  # the end of the stream: the server answers the rest and closes
        except OSError:
            pass

    threading.Thread(target=send, daemon=True).start()
    output = open(args.output, "w") if args.output else None
    counts = {"replies": 0, "anomalies": 0, "rejected": 0}
    try:
        for raw in sock.makefile("r", encoding="utf-8"):
            reply = json.loads(raw)
            counts["replies"] += 1
            counts["anomalies"] += bool(reply.get("is_anomaly"))
            counts["rejected"] += "rejected" in reply
            if output:
                output.write(raw)
            if not args.quiet and (text := describe(reply)):
                print(text, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if output:
            output.close()
    print(f"sent {sent[0]} lines; {counts['replies']} replies: {counts['anomalies']} anomalies, "
          f"{counts['rejected']} rejected lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
