# shellcheck shell=bash
# The Debian 12 packages herald needs, in one place, and a helper that
# installs the missing ones. Sourced by tools/test and tools/demo; not a
# script of its own.
#
#   herald_ensure_packages install   install what is missing (root), or print
#                                    the apt-get command and fail (not root)
#   herald_ensure_packages check     only report what is missing; never fails

# Every name here was checked with `apt-cache policy` on Debian 12 (bookworm).
HERALD_PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config
  # what the libraries, daemon and CLI build with (DESIGN.md, "Dependencies")
  libboost-dev libconcurrentqueue-dev libmimalloc-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev libcpp-httplib-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # herald-bench's peers (only bench/ links them) and the redis server it drives
  libhiredis-dev libzmq3-dev cppzmq-dev redis-server
  iceoryx libiceoryx-posh-dev libiceoryx-hoofs-dev
  # the model checker for the claim/commit/repair models
  spin
)

# Messages are tagged with the caller's HERALD_SCRIPT (e.g. tools/test).
_herald_pkg_say() { printf '[%s] %s\n' "${HERALD_SCRIPT:-${0##*/}}" "$*" >&2; }

# Prints the packages of HERALD_PACKAGES that are not installed, one a line.
# `dpkg -s` alone is not enough: a removed package whose config files remain
# still answers, so the Status line must say "install ok installed". (Its
# output is captured, not piped to `grep -q`, which under pipefail could fail
# on dpkg's SIGPIPE.)
herald_missing_packages() {
  local p status
  for p in "${HERALD_PACKAGES[@]}"; do
    status=$(dpkg -s "$p" 2>/dev/null) || status=""
    if [[ "$status" != *$'\nStatus: install ok installed\n'* ]]; then
      printf '%s\n' "$p"
    fi
  done
}

herald_ensure_packages() {
  local check_only
  case "${1:-}" in
    install) check_only=0 ;;
    check) check_only=1 ;;
    *) _herald_pkg_say "herald_ensure_packages: say 'install' or 'check'"; return 2 ;;
  esac

  local missing
  mapfile -t missing < <(herald_missing_packages)
  if ((${#missing[@]} == 0)); then
    _herald_pkg_say "packages: all ${#HERALD_PACKAGES[@]} present"
    return 0
  fi

  local cmd="apt-get install -y ${missing[*]}"
  if ((check_only)); then
    _herald_pkg_say "warning: missing packages (not installing): ${missing[*]}"
    _herald_pkg_say "         install them with: sudo $cmd"
    return 0
  fi
  if ((EUID != 0)); then
    _herald_pkg_say "error: missing packages: ${missing[*]}"
    _herald_pkg_say "       install them as root, then rerun:"
    printf '  sudo apt-get update && sudo %s\n' "$cmd" >&2
    return 1
  fi

  _herald_pkg_say "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a dpkg lock held by something else (a fresh machine may be
  # running its own apt) rather than failing at once; retry a flaky mirror.
  local apt=(apt-get -q -o DPkg::Lock::Timeout=300)
  local attempt
  for attempt in 1 2 3; do
    if "${apt[@]}" update && "${apt[@]}" install -y "${missing[@]}"; then
      break
    fi
    _herald_pkg_say "apt-get failed (attempt $attempt of 3)"
    ((attempt < 3)) && sleep 10
  done

  mapfile -t missing < <(herald_missing_packages)
  if ((${#missing[@]} != 0)); then
    _herald_pkg_say "error: still missing after apt-get: ${missing[*]}"
    return 1
  fi
  _herald_pkg_say "packages: installed"
}
