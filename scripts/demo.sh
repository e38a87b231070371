#!/usr/bin/env bash
# The README's main command: on a fresh machine, create .venv and install the project
# (scripts/bootstrap.sh), then run `mic-pipeline demo` with the arguments given here
# (e.g. `scripts/demo.sh --quick`, `scripts/demo.sh --keep-running`; see `--help`).
#
# The demo reuses the Kafka broker at MIC_KAFKA_BOOTSTRAP (default 127.0.0.1:9092) or starts its own
# (Java 17+ and Maven fetch its jars once), writes everything under ./demo, and exits 0 only when
# its summary reconciles.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/mic-pipeline demo "$@"
