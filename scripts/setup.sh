#!/usr/bin/env bash
# Installs what mvi's local backend and its tests need from the system, if missing:
# PostgreSQL's server binaries (the Database service runs a real PostgreSQL) and python3
# (the tutorial web app). Idempotent; does nothing when everything is there.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || command -v pg_config >/dev/null 2>&1 \
    || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

missing=()
have_postgres || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The Python binding's tests build it in a virtualenv (scripts/test-python.sh).
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# moto_server (PyPI `moto[server]`), the AWS endpoint the AWS backend's tests run against.
# 5.2.5 or newer: older releases miss what the newest AWS SDK crates speak.
moto_ok() {
  command -v moto_server >/dev/null 2>&1 || return 1
  python3 - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
v = tuple(int(p) for p in version("moto").split(".")[:3] if p.isdigit())
sys.exit(0 if v >= (5, 2, 5) else 1)
PY
}
if ! moto_ok; then
  echo "setup: installing moto[server]>=5.2.5"
  python3 -m pip install --quiet 'moto[server]>=5.2.5'
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  moto_ok || { echo "setup: moto_server >= 5.2.5 is still missing" >&2; exit 1; }
fi

# The AWS CLI: the endpoint tests (tests/endpoints.rs) drive the local cloud's S3 endpoint
# with it, as a client no one here wrote. Any release from 2023 on reads AWS_ENDPOINT_URL_*.
if ! command -v aws >/dev/null 2>&1; then
  echo "setup: installing the AWS CLI (awscli)"
  python3 -m pip install --quiet awscli
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  command -v aws >/dev/null 2>&1 || { echo "setup: the AWS CLI is still missing" >&2; exit 1; }
fi

# boto3 for the apps in containers that use the local endpoints (the tutorial web app's
# /upload and /visits): containers run the host's python3.
if ! python3 -c 'import boto3' >/dev/null 2>&1; then
  echo "setup: installing boto3"
  python3 -m pip install --quiet boto3
fi

# The Python binding's build and checks (scripts/test-python.sh): maturin, pytest and mypy
# in a virtualenv under the cache folder, installed with pip when missing.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/mvi/venv-py"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import maturin, pytest, mypy' >/dev/null 2>&1; then
  echo "setup: installing maturin, pytest and mypy into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'maturin>=1.9,<2' pytest 'mypy>=1.18'
fi
