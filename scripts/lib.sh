# shellcheck shell=bash
# Shared by the scripts/ commands: the Python virtualenv with the pinned tooling, and starting a
# systemd container from the project image. Sourced, not run.
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

# The local Debian 12 image scripts/build-images builds; the systemd containers start from it.
DW_IMAGE_DEFAULT=localhost/dw-debian:12

# start_systemd_container [--replace] NAME [IMAGE]
# Start the systemd container NAME from IMAGE (default $DW_IMAGE_DEFAULT): create it if it does not
# exist, start it if it is stopped, and wait until systemd inside is up (running or degraded), so
# Ansible can manage units. --replace removes any container NAME first, for a throwaway container
# that must start bare. Waits up to 30 s; after that it warns and returns, and the caller goes on.
# scripts/build-local uses it; bench/run.py reaches it through scripts/start-container.
start_systemd_container() {
  local replace=false
  if [ "${1:-}" = --replace ]; then
    replace=true
    shift
  fi
  local name=${1:?start_systemd_container: container name missing} image=${2:-$DW_IMAGE_DEFAULT} state=
  if $replace; then
    podman rm -f "$name" >/dev/null 2>&1 || true
  fi
  if ! podman container exists "$name"; then
    # CAP_SYS_ADMIN lets systemd inside build the mount namespaces the units are sandboxed with.
    podman run -d --name "$name" --hostname "$name" --systemd=always --cap-add SYS_ADMIN "$image" /sbin/init >/dev/null
  elif [ "$(podman inspect -f '{{.State.Running}}' "$name")" != true ]; then
    podman start "$name" >/dev/null
  fi
  # systemd inside needs a moment before Ansible can manage units.
  for _ in $(seq 1 30); do
    # is-system-running exits non-zero for "degraded" too; its output is what counts.
    state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) return 0 ;; esac
    sleep 1
  done
  echo "start_systemd_container: systemd in '$name' is still '${state:-unreachable}' after 30 s; going on" >&2
}
