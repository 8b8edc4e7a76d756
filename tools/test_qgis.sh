#!/usr/bin/env bash
# Run the test suite on a Debian release's QGIS, in a cached debootstrap chroot.
#
#   tools/test_qgis.sh 3.40|3.44 [make test arguments, e.g. PYTEST_ARGS="-k launcher"]
#
# QGIS 3.40 is Debian 13 (trixie), QGIS 3.44 LTR is Debian forky. The chroot lives in
# build/chroot-<suite> (its venv in /opt/lcfusion-venv inside it) and is built once: later runs
# reuse it and only re-run `make setup`, which installs nothing that is already there. The
# repository and ../shared are bind-mounted at the same paths as on the host. The tests run in
# their own network and PID namespaces, so their sshd, Slurm, munge and mpirun on loopback ports
# cannot meet the host's, and every process they start ends with them. Every mount is undone on
# exit, failure and Ctrl+C.
set -euo pipefail

QGIS_VERSION=${1:?usage: tools/test_qgis.sh 3.40|3.44 [make arguments]}
shift
case "$QGIS_VERSION" in
    3.40) SUITE=trixie ;;
    3.44) SUITE=forky ;;
    *) echo "QGIS=$QGIS_VERSION: no Debian suite for it; use QGIS=3.40 (trixie) or 3.44 (forky)" >&2
       exit 2 ;;
esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(realpath -m "${SHARED_DIR:-$REPO/../shared}")
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Resolved, because findmnt prints resolved paths: a build/chroot-<suite> that is a link to a chroot
# elsewhere must still have its mounts found and undone.
ROOT=$(realpath -m "$REPO/build/chroot-$SUITE")
VENV=/opt/lcfusion-venv
# What `make setup` needs before it can run; the QGIS stack comes from the Makefile's APT_PACKAGES.
BOOTSTRAP_PACKAGES=make,python3,ca-certificates
# Local wheel stores that the host's pip configuration points at.
WHEEL_STORES=(/opt/wheels /opt/pypi /opt/pypi-more)

[ "$(id -u)" = 0 ] || { echo "make test-qgis needs root (debootstrap, mount, chroot)" >&2; exit 2; }
if ! command -v debootstrap >/dev/null || ! command -v ip >/dev/null; then
    echo "Installing debootstrap and iproute2 (to build the chroot and bring up its loopback)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends debootstrap iproute2
fi

log() { printf '[test-qgis %s %s] %s\n' "$QGIS_VERSION" "$(date -u +%H:%M:%S)" "$*"; }

# Every mount below a chroot folder (deepest first), lazily, so a busy one cannot stay behind.
unmount_below() {
    local target
    findmnt -rn -o TARGET | awk -v root="$1" 'index($0, root) == 1' | sort -r | \
        while read -r target; do umount -l "$target" || true; done
}

cleanup() {
    local status=$?
    # A second Ctrl+C or kill while unmounting must not stop it half-way: ignore them now.
    trap - EXIT
    trap '' INT TERM
    unmount_below "$ROOT"
    unmount_below "$ROOT.partial"
    if findmnt -rn -o TARGET | grep -F "$ROOT" >&2; then
        echo "these mounts of the $SUITE chroot are still present" >&2
        status=1
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; stop_step; exit 130' INT TERM

bind() {  # bind SOURCE [ro]: mount SOURCE at the same path inside the chroot
    mkdir -p "$ROOT$1"
    mount --bind "$1" "$ROOT$1"
    if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$1"; fi
}

mount_system() {
    mount -t proc proc "$ROOT/proc"
    mount --bind /sys "$ROOT/sys"
    mount --bind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"
    mount --bind /dev "$ROOT/dev"
    mount --bind /dev/pts "$ROOT/dev/pts"
}

mount_work() {
    bind "$REPO"
    if [ -d "$SHARED" ]; then
        mkdir -p "$ROOT$(dirname "$REPO")/shared"
        mount --bind "$SHARED" "$ROOT$(dirname "$REPO")/shared"
    else
        log "no shared data at $SHARED (set SHARED_DIR=...): the real-data tests will skip"
    fi
    local store
    for store in "${WHEEL_STORES[@]}"; do [ -d "$store" ] && bind "$store" ro; done
    return 0
}

# The host's pip configuration, CA certificates, resolver and hosts file (Slurm and ssh resolve
# localhost, which debootstrap's minbase leaves unnamed), so pip, apt and the services work.
copy_host_config() {
    local path
    for path in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" /etc/resolv.conf /etc/hosts; do
        if [ -e "$path" ]; then
            mkdir -p "$ROOT$(dirname "$path")"
            rm -rf "${ROOT:?}$path"
            cp -a "$path" "$ROOT$path"
        fi
    done
    mkdir -p "$ROOT/usr/local/share/ca-certificates" "$ROOT/etc/ssl/certs"
    cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
}

# Long steps run in the background in their own session: INT and TERM then reach the trap at
# once (not when the step ends), and the trap kills the step's whole process group. Inside the
# chroot a step also gets its own PID namespace (and, for the tests, network namespace), so
# that killing its `unshare` ends every process in it, daemons included (--kill-child).
# Bash starts a background command with SIGINT and SIGQUIT ignored; `env --default-signal`
# gives the step the dispositions a command started from a terminal has (Python's Ctrl+C).
step=0
run_step() {  # run_step COMMAND...
    local status=0
    setsid env --default-signal=INT,QUIT "$@" &
    step=$!
    wait "$step" || status=$?
    step=0
    return "$status"
}

stop_step() {
    if [ "$step" != 0 ]; then kill -KILL -- "-$step" 2>/dev/null || true; fi
}

in_chroot() {  # in_chroot [--net] COMMAND...: run COMMAND inside the chroot as a step
    local namespaces=(--pid --fork --kill-child --mount-proc="$ROOT/proc")
    if [ "$1" = --net ]; then namespaces+=(--net); shift; fi
    run_step unshare "${namespaces[@]}" sh -c 'ip link set lo up && exec "$@"' sh \
        chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        $(env | grep -E '^PIP_' || true) "$@"
}

build_chroot() {
    local started=$SECONDS partial=$ROOT.partial
    log "building the $SUITE chroot in $ROOT (debootstrap from $MIRROR)"
    rm -rf "$partial"
    # Debian's debootstrap knows forky only under sid's script; the suites share it.
    run_step debootstrap --variant=minbase --include="$BOOTSTRAP_PACKAGES" "$SUITE" "$partial" "$MIRROR" \
        /usr/share/debootstrap/scripts/sid
    # Services that the packages install must not start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' > "$partial/usr/sbin/policy-rc.d"
    chmod 755 "$partial/usr/sbin/policy-rc.d"
    echo "deb $MIRROR $SUITE main" > "$partial/etc/apt/sources.list"
    # A mirror snapshot older than its Release file's Valid-Until (a frozen archive) still serves.
    echo 'Acquire::Check-Valid-Until "false";' > "$partial/etc/apt/apt.conf.d/99lcfusion"
    mv "$partial" "$ROOT"
    log "debootstrap done in $((SECONDS - started)) s"
}

# Exit status 3: the chroot cannot be built for want of the archive (CI reports the suite as
# not run), as distinct from a failed test.
archive_or_exit() {
    wget -q --spider --timeout=30 --tries=2 "$MIRROR/dists/$SUITE/Release" && return 0
    echo "The Debian archive $MIRROR cannot be reached (no $SUITE Release file): the QGIS" \
        "$QGIS_VERSION chroot cannot be built here. Set DEBIAN_MIRROR=... to a mirror that can." >&2
    exit 3
}

[ -x "$ROOT/usr/bin/python3" ] || { archive_or_exit; build_chroot; }
copy_host_config
mount_system
mount_work

started=$SECONDS
log "make setup VENV=$VENV (Debian packages, venv); $(df -h --output=avail "$ROOT" | tail -1 | tr -d ' ')" \
    "free on the chroot's disk"
in_chroot dpkg --configure -a  # finishes an installation that an earlier run was stopped in
in_chroot make -C "$REPO" apt
in_chroot apt-get clean  # the installed packages' downloads (600 MB), before torch needs the space
in_chroot make -C "$REPO" setup VENV="$VENV"
log "setup done in $((SECONDS - started)) s"
in_chroot sh -c 'echo "$(qgis_process --version 2>/dev/null | grep -m1 QGIS)," \
    "Python $(python3 -V | cut -d" " -f2)"' || true

started=$SECONDS
log "make test on QGIS $QGIS_VERSION ($SUITE), in its own network and PID namespaces"
status=0
in_chroot --net make -C "$REPO" test VENV="$VENV" "$@" || status=$?
log "make test finished with status $status in $((SECONDS - started)) s"
unmount_below "$ROOT"
log "sizes: chroot $(du -sh "$ROOT" | cut -f1) (with the venv), venv $(du -sh "$ROOT$VENV" | cut -f1)"
exit "$status"
