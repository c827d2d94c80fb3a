# Shared by scripts/build-local and scripts/test: the Python virtualenv with the pinned tooling.
# Sourced, not run.
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO_ROOT/.venv"

ensure_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "venv: installing requirements.txt and requirements-dev.txt into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      -r "$REPO_ROOT/requirements.txt" -r "$REPO_ROOT/requirements-dev.txt"
    echo "$want" > "$stamp"
  fi
  # molecule and ansible-lint look for ansible-config and friends on PATH.
  export PATH="$VENV/bin:$PATH"
}
