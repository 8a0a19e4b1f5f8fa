#!/usr/bin/env bash
# Install llama-desk for this user (no root): a private Python environment, a menu entry, an uninstaller.
# The Linux twin of the Windows installer; arguments go to installer/setup_llama_desk.py, e.g.
#   installer/install.sh --mirror tuna --launch      installer/install.sh --uninstall [--remove-data]
# PYTHON=/path/to/python3.11 picks the interpreter (default: python3.11, else python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "" >/dev/null 2>&1; then
      python="$candidate"
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "install.sh: Python 3.11 is needed (3.10 and 3.12 work too): install python3.11 and python3-venv" >&2
  exit 2
fi
exec "$python" "$here/setup_llama_desk.py" "$@"
