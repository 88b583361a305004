# Sourced by .ci/run and .ci/lock: a pinned uv in .ci/.venv-uv, using pip's index settings.
# uv does not read pip's configuration files; a machine whose pip points at a mirror or a private
# CA bundle must give uv the same, or locking and installing would reach for other servers.

UV_VERSION="0.13.9"
UV=".ci/.venv-uv/bin/uv"

_pip_setting() {
  "${PYTHON:-python3}" -m pip config get "global.$1" 2>/dev/null || true
}

ensure_uv() {
  if [ ! -x "$UV" ] || [ "$("$UV" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    "${PYTHON:-python3}" -m venv .ci/.venv-uv
    .ci/.venv-uv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  fi
  if [ -z "${UV_DEFAULT_INDEX:-}" ] && [ -z "${UV_INDEX_URL:-}" ]; then
    local index="${PIP_INDEX_URL:-$(_pip_setting index-url)}"
    if [ -n "$index" ]; then export UV_DEFAULT_INDEX="$index"; fi
  fi
  if [ -z "${SSL_CERT_FILE:-}" ]; then
    local cert="${PIP_CERT:-$(_pip_setting cert)}"
    if [ -n "$cert" ]; then export SSL_CERT_FILE="$cert"; fi
  fi
  export UV_PYTHON_DOWNLOADS=never
}
