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

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
