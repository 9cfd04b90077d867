#!/usr/bin/env python3
"""A webhook receiver for Alertmanager that prints each notification: the stack's default
destination until a real one is configured in deploy/alertmanager/alertmanager.yml.

Run by the ``alert-log`` service of docker-compose.yml (``python alert_log.py --port 9095``)
and by the Alertmanager test. One JSON line per alert: receiver (the URL path), status,
labels and summary. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Requests are handled on threads; print() writes a line and its newline separately, so
#: two notifications at once could come out as "{...}{...}\n\n". One write per line, locked.
_OUT = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            notification = json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        for alert in notification.get("alerts", []):
            line = {
                "receiver": self.path.strip("/"),
                "status": alert.get("status"),
                "labels": alert.get("labels", {}),
                "summary": alert.get("annotations", {}).get("summary", ""),
            }
            with _OUT:
                sys.stdout.write(json.dumps(line, sort_keys=True) + "\n")
                sys.stdout.flush()
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged; the alerts are."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9095, help="port (default 9095)")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    print(f"alert-log listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
