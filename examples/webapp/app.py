"""The "Minimum Viable Infrastructure" tutorial web app: Python 3's standard library, and
boto3 for the two pages that use AWS services.

Serves on $PORT:
  /                  "Hello from mvi", the version ($APP_VERSION, default v1) and which
                     replica answered
  /healthz           200 (for health checks and load balancers)
  /db                a value read from the database at $DATABASE_URL with psql (503 with the
                     error if that fails)
  /secret            whether $APP_SECRET is set (never its value)
  POST /upload/KEY   stores the request body as object KEY of bucket $UPLOAD_BUCKET (S3);
                     201 and the ETag. `?bucket=NAME` names another bucket, to see what the
                     service's grants allow.
  GET /upload/KEY    that object's content
  /visits            increments the counter in table $VISITS_TABLE (DynamoDB; key `page`,
                     a string) and answers "visits: N"

An AWS error answers 502 with "<Code>: <Message>" (403 for AccessDenied). boto3 takes its
endpoint, region and credentials from the environment: locally the container service gives
`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_DYNAMODB` and a key of the service's own; on AWS the
task role's credentials come from the default chain. The code is the same.
"""

import os
import socket
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(os.environ.get("PORT", "8080"))
VERSION = os.environ.get("APP_VERSION", "v1")
_clients = {}


def aws(service):
    """A boto3 client, made on first use: the pages that need no AWS service start without
    importing boto3 (about a third of a second)."""
    if service not in _clients:
        import boto3

        _clients[service] = boto3.client(service)
    return _clients[service]


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def aws_call(self, ok_status, call):
        """Runs `call()`, answering its text, or the AWS error it raised."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.reply(ok_status, call())
        except ClientError as e:
            err = e.response.get("Error", {})
            code = err.get("Code", "?")
            status = 403 if code in ("AccessDenied", "AccessDeniedException") else 502
            self.reply(status, f"{code}: {err.get('Message')}")
        except BotoCoreError as e:
            self.reply(502, f"{type(e).__name__}: {e}")

    def upload_target(self):
        url = urlsplit(self.path)
        bucket = parse_qs(url.query).get("bucket", [os.environ.get("UPLOAD_BUCKET", "")])[0]
        return bucket, url.path[len("/upload/"):]

    def do_POST(self):
        if not self.path.startswith("/upload/"):
            self.reply(404, "not found")
            return
        bucket, key = self.upload_target()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.aws_call(201, lambda: aws("s3").put_object(Bucket=bucket, Key=key, Body=body)["ETag"])

    def do_GET(self):
        if self.path.startswith("/upload/"):
            bucket, key = self.upload_target()
            self.aws_call(200, lambda: aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        elif self.path == "/visits":
            self.aws_call(200, self.count_visit)
        elif self.path == "/":
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

    def count_visit(self):
        out = aws("dynamodb").update_item(
            TableName=os.environ.get("VISITS_TABLE", ""),
            Key={"page": {"S": "/visits"}},
            UpdateExpression="ADD visits :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return f"visits: {out['Attributes']['visits']['N']}"

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
