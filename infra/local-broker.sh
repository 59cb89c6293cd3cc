#!/usr/bin/env bash
# Start or stop a real Kafka-protocol broker on a free loopback port, without Docker.
#   infra/local-broker.sh start   # prints kafka://127.0.0.1:PORT, writes the pidfile
#   infra/local-broker.sh stop
# PYTHON selects the interpreter (default: .venv/bin/python if present, else python3);
# ORDINANCE_BROKER_PIDFILE the pidfile (default: .ordinance-broker.pid in the repo root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
pidfile="${ORDINANCE_BROKER_PIDFILE:-$root/.ordinance-broker.pid}"
case "${1:-}" in
  start|stop) exec "$python" -m ordinance.streams.kafka_broker "$1" --pidfile "$pidfile" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
