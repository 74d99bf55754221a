# shellcheck shell=bash
# Helpers for every install step (sourced by scripts/bootstrap.sh, the install_*.sh scripts and
# scripts/services/*.sh). A download that fails once must not turn a first run red: every
# registry call (PyPI, Debian, Maven Central, the Go module proxy) goes through `retry`.

# retry CMD...: run CMD until it succeeds, at most STRATMASTER_RETRIES times (default 5),
# waiting 3, 6, 12, 24 s between tries. Returns CMD's last exit code.
retry() {
  local tries="${STRATMASTER_RETRIES:-5}" delay=3 n=1 rc
  while :; do
    "$@" && return 0
    rc=$?
    if [ "$n" -ge "$tries" ]; then
      echo "retry: gave up after $n tries (exit $rc): $*" >&2
      return "$rc"
    fi
    echo "retry: exit $rc, try $((n + 1))/$tries in ${delay}s: $*" >&2
    sleep "$delay"
    n=$((n + 1)) delay=$((delay * 2))
  done
}

# fetch_url URL DEST: download to DEST.part, then move it into place (never a half file at DEST).
fetch_url() {
  local url="$1" dest="$2"
  retry curl -fsSL --connect-timeout 20 --max-time 900 -o "$dest.part" "$url" && mv "$dest.part" "$dest"
}

# apt_install PKG...: Debian packages, with the package lists refreshed first.
apt_install() {
  retry apt-get -o Acquire::Retries=3 update -qq \
    && retry env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "$@" >/dev/null
}
