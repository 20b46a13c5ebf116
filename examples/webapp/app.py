"""The "Minimum Viable Infrastructure" tutorial web app: Python 3 standard library only.

Serves on $PORT:
  /         "Hello from mvi", the version ($APP_VERSION, default v1) and which replica
            answered
  /healthz  200 (for health checks and load balancers)
  /db       a value read from the database at $DATABASE_URL with psql (503 with the error
            if that fails)
  /secret   whether $APP_SECRET is set (never its value)
"""

import os
import socket
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
VERSION = os.environ.get("APP_VERSION", "v1")


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/":
            host = os.environ.get("HOSTNAME") or socket.gethostname()
            self.reply(200, f"Hello from mvi (version {VERSION}, replica {host}, port {PORT})")
        elif self.path == "/healthz":
            self.reply(200, "ok")
        elif self.path == "/db":
            self.db()
        elif self.path == "/secret":
            is_set = bool(os.environ.get("APP_SECRET"))
            self.reply(200, "APP_SECRET is set" if is_set else "APP_SECRET is not set")
        else:
            self.reply(404, "not found")

    def db(self):
        url = os.environ.get("DATABASE_URL")
        if not url:
            self.reply(503, "DATABASE_URL is not set")
            return
        try:
            out = subprocess.run(
                ["psql", url, "-tAc", "select 'database says hello at ' || now()"],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            self.reply(503, f"database unreachable: {e}")
            return
        if out.returncode != 0:
            self.reply(503, f"database error: {out.stderr.strip()}")
        else:
            self.reply(200, out.stdout.strip())

    def log_message(self, fmt, *args):
        # One line per request on stdout: the Log service collects it.
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"listening on 127.0.0.1:{PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
