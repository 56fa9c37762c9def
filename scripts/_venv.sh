# Sourced by the other scripts: make .venv with raftsql and its dev tools installed.
# Versions are pinned by scripts/constraints.txt; re-installs only when it or pyproject.toml
# changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.raftsql-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet -c scripts/constraints.txt -e ".[dev]"
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
