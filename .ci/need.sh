# Sourced by .ci/run and .ci/extra. need CMD PKG WHY: installs Debian's PKG when CMD is missing.
need() {
  local cmd=$1 pkg=$2 why=$3
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$pkg is required ($why) and apt-get is not available" >&2
    exit 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "$pkg"
}
