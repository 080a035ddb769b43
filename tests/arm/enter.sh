#!/usr/bin/env bash
# Run a command inside the emulated Raspberry Pi that tests/arm/setup.sh built.
#
#   tests/arm/enter.sh IMAGE [--overlay DIR] [--bind SRC:DST[:ro]]... -- CMD [ARG]...
#   tests/arm/enter.sh IMAGE --direct -- GUEST_PROGRAM [ARG]...
#
# binfmt mode (the image's `mode` file says binfmt): in private mount and PID namespaces (`unshare -m -p`: every
# mount below vanishes with the command, and the emulated system's processes see and signal only each other), the image's rootfs (or, with --overlay DIR, a throwaway overlay of it whose
# changes go to DIR) gets /proc with the Pi 4's /proc/cpuinfo bound over the host's (qemu 7.2 shows the host's),
# /dev, a tmpfs /run, the host's resolv.conf (and the CA bundle its pip uses), and the --bind folders; then `chroot` runs CMD with a clean
# environment and QEMU_CPU=cortex-a72, so every aarch64 program (and every program it starts, through binfmt_misc)
# runs on an emulated Cortex-A72, the Pi 4's CPU. /sys is not mounted: the rootfs carries its own
# /sys/devices/system/cpu/{possible,present,online} (onnxruntime's CPU detection crashes on the host's /sys).
#
# direct mode (binfmt_misc could not be registered): no chroot (still its own mount and PID namespaces); qemu-aarch64-static runs GUEST_PROGRAM (a path in
# the rootfs, e.g. /usr/bin/python3.11) with -L ROOTFS, which makes the guest's absolute paths resolve in the
# rootfs first and on the host otherwise; the Pi's cpuinfo and cpu files are bound over the host's. Programs the
# guest starts are not emulated in this mode (no binfmt), so only single-process work runs here.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
IMAGE=$(cd "$1" && pwd)
shift
ROOTFS=$IMAGE/rootfs
OVERLAY=""
DIRECT=0
BINDS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --overlay) OVERLAY="$2"; shift 2 ;;
        --bind) BINDS+=("$2"); shift 2 ;;
        --direct) DIRECT=1; shift ;;
        --) shift; break ;;
        *) echo "enter.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ $# -ge 1 ] || { echo "enter.sh: no command given" >&2; exit 2; }
[ -d "$ROOTFS" ] || { echo "enter.sh: $ROOTFS does not exist; run tests/arm/setup.sh" >&2; exit 2; }
GUEST_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
           QEMU_CPU=cortex-a72 TERM=dumb PYTHONDONTWRITEBYTECODE=1)

if [ "${POCKETVIT_ARM_INSIDE:-}" != 1 ]; then
    # Private mount and PID namespaces: the emulated system sees (and can signal) only its own processes (a package's
    # maintainer script that stops "its" daemons must not find this host's), its mounts vanish with it, and
    # --kill-child ends it when we end (a killed test leaves nothing running).
    exec env POCKETVIT_ARM_INSIDE=1 unshare --mount --pid --propagation private --fork --kill-child -- \
        bash "${BASH_SOURCE[0]}" "$IMAGE" ${OVERLAY:+--overlay "$OVERLAY"} \
        $([ "$DIRECT" = 1 ] && echo --direct) $(for b in "${BINDS[@]+"${BINDS[@]}"}"; do printf -- '--bind %s ' "$b"; done) -- "$@"
fi
unset POCKETVIT_ARM_INSIDE

if [ "$DIRECT" = 1 ]; then
    mount -t proc proc /proc  # this PID namespace's
    mount --bind "$IMAGE/cpuinfo" /proc/cpuinfo
    for f in possible present online; do
        [ -e /sys/devices/system/cpu/$f ] && mount --bind "$ROOTFS/sys/devices/system/cpu/$f" /sys/devices/system/cpu/$f
    done
    prog="$1"
    shift
    exec env -i "${GUEST_ENV[@]}" PYTHONPATH="${GUEST_PYTHONPATH:-}" \
        qemu-aarch64-static -cpu cortex-a72 -L "$ROOTFS" "$ROOTFS$prog" "$@"
fi

R=$ROOTFS
if [ -n "$OVERLAY" ]; then
    mkdir -p "$OVERLAY/upper" "$OVERLAY/work" "$OVERLAY/merged"
    mount -t overlay overlay -o "lowerdir=$ROOTFS,upperdir=$OVERLAY/upper,workdir=$OVERLAY/work" "$OVERLAY/merged"
    R=$OVERLAY/merged
fi
mount -t proc proc "$R/proc"
mount --bind "$IMAGE/cpuinfo" "$R/proc/cpuinfo"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=755 tmpfs "$R/run"
mkdir -p "$R/run/sshd" "$R/run/lock"
# the host's network settings: its resolver, and the CA bundle it trusts (a network that inspects TLS, as some CI
# networks do, is trusted there); pip in the guest is pointed at that bundle where the host's pip is
touch "$R/etc/resolv.conf"
mount --bind /etc/resolv.conf "$R/etc/resolv.conf"
HOST_CA=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}
if [ -n "$HOST_CA" ] && [ -f "$HOST_CA" ]; then
    mkdir -p "$R/etc/ssl/certs"
    touch "$R/etc/ssl/certs/pocketvit-host-ca.crt"
    mount --bind "$HOST_CA" "$R/etc/ssl/certs/pocketvit-host-ca.crt"
    GUEST_ENV+=(PIP_CERT=/etc/ssl/certs/pocketvit-host-ca.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/pocketvit-host-ca.crt
                SSL_CERT_FILE=/etc/ssl/certs/pocketvit-host-ca.crt)
fi
for b in "${BINDS[@]+"${BINDS[@]}"}"; do
    IFS=: read -r src dst opt <<<"$b"
    if [ -d "$src" ]; then mkdir -p "$R$dst"; else mkdir -p "$(dirname "$R$dst")"; touch "$R$dst"; fi
    mount --bind "$src" "$R$dst"
    [ "$opt" = ro ] && mount -o remount,bind,ro "$R$dst"
done
exec chroot "$R" /usr/bin/env -i "${GUEST_ENV[@]}" "$@"
