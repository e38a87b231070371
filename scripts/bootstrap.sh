#!/usr/bin/env bash
# Create the project's virtualenv (.venv, Python 3.11) if missing and install the project with its
# dev extras into it. Idempotent and quick when nothing changed: the install is skipped while
# pyproject.toml is the one last installed (its hash is kept in .venv/.mic-installed).
#
# Environment: MIC_PYTHON (the interpreter to create .venv with; default python3.11, else python3
# if it is 3.11 or newer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pick_python() {
    if [[ -n "${MIC_PYTHON:-}" ]]; then
        echo "$MIC_PYTHON"
    elif command -v python3.11 >/dev/null 2>&1; then
        echo python3.11
    elif python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo python3
    else
        echo "bootstrap.sh: Python 3.11 or newer is needed (set MIC_PYTHON)" >&2
        exit 1
    fi
}

if [[ ! -x .venv/bin/python ]]; then
    python="$(pick_python)"
    echo "bootstrap.sh: creating .venv with $python" >&2
    "$python" -m venv .venv
fi

stamp=.venv/.mic-installed
extras="dev,bench"
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "bootstrap.sh: installing the project into .venv (pip install -e '.[$extras]')" >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
    echo "$wanted" >"$stamp"
fi
