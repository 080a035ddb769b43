#!/usr/bin/env bash
# An emulated 64-bit Raspberry Pi for `make test-arm`: Debian bookworm arm64 (the userland of Raspberry Pi OS
# bookworm 64-bit) built with debootstrap from the Debian archive apt already uses, run under qemu user-mode
# emulation with a Cortex-A72 (the Pi 4's CPU), Python 3.11 and two venvs of aarch64 wheels fetched on this host:
#
#   /opt/pv-rt   numpy<2, tflite-runtime 2.14.0, onnxruntime: the torch-free runtime a Pi app uses
#   /opt/pv-et   executorch 1.5.1 with its dependencies and torch (ExecuTorch's Python bindings need both)
#
# plus what apps/raspberry-pi/install.sh installs with apt (its step 1), so that the script's apt step finds a
# system like a Pi that has run it before, a user `pi`, openssh-server, and the Pi 4's /proc/cpuinfo and
# /sys/devices/system/cpu files (tests/arm/enter.sh puts them in place).
#
#   sudo tests/arm/setup.sh        prints the image folder on its last line (builds it the first time)
#
# The image is cached outside the clone in $POCKETVIT_ARM_CACHE (default ~/.cache/pocketvit/arm/<key>), <key> a
# hash of this script and pi4-cpuinfo, so a rerun takes a second. It is built in <key>.tmp and renamed when done,
# so a killed setup never leaves an image a rerun would trust. Needs root (debootstrap, chroot, mounts),
# debootstrap and qemu-user-static (`make test-arm` apt-installs them), network access to the Debian archive and
# PyPI. Measured here (2 cores shared with other jobs): first build about 40 minutes (13 CPU-minutes), 7.5 GB;
# a rerun 0.1 s.
#
# binfmt_misc: registered for qemu-aarch64 (update-binfmts) so that every aarch64 program runs emulated, also in a
# chroot. Where it cannot be registered (a container without the privilege), POCKETVIT_ARM_MODE=direct (also
# chosen automatically) builds a smaller image: debootstrap --foreign, every package unpacked with dpkg-deb on the
# host, the torch-free wheels installed by the host's pip (--target, aarch64 platform tags); its checks run
# qemu-aarch64-static directly (tests/arm/enter.sh --direct), and what needs binfmt (apt, ExecuTorch's venv,
# install.sh, sshd) is skipped with that reason.
#
# Environment: POCKETVIT_ARM_CACHE, POCKETVIT_ARM_MODE (auto | binfmt | direct), HOST_PY (a Python with pip for
# `pip download`; default .venv/bin/python, else python3), DEBIAN_MIRROR (default: apt's first Debian URI).
# Exit codes: 0 ok, 77 cannot be built on this machine (the reason on stderr), other: failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE=bookworm
RT_REQS=("numpy<2" "tflite-runtime==2.14.0" "onnxruntime==1.32.0")
ET_REQS=("executorch==1.5.1" "torch==2.14.1")
ET_SDIST_ONLY=("antlr4-python3-runtime==4.9.3")  # hydra-core's dependency: PyPI has no wheel of it
# apps/raspberry-pi/install.sh, step 1 (python3-picamera2 is only in Raspberry Pi's own archive)
PI_APT=(python3-venv python3-pip python3-numpy python3-opencv)
BASE_APT=python3,python3-venv,ca-certificates,openssh-server,tar,procps

say() { echo "setup.sh: $*" >&2; }
skip() { echo "setup.sh: skip: $*" >&2; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot and mounts); run it with sudo"
for tool in debootstrap qemu-aarch64-static unshare; do
    command -v "$tool" >/dev/null || skip "$tool not found (Debian: apt-get install debootstrap qemu-user-static binfmt-support)"
done

binfmt_ready() {
    [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
        && grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64
}
register_binfmt() {
    binfmt_ready && return 0
    [ -f /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    if command -v update-binfmts >/dev/null; then update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true; fi
    if ! binfmt_ready && [ -w /proc/sys/fs/binfmt_misc/register ]; then
        # qemu-user-static's own entry, "F": the interpreter is opened now, so it works inside a chroot too
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            > /proc/sys/fs/binfmt_misc/register 2>/dev/null || true
    fi
    binfmt_ready
}

MODE=${POCKETVIT_ARM_MODE:-auto}
case "$MODE" in
    auto) if register_binfmt; then MODE=binfmt; else MODE=direct; say "binfmt_misc cannot be registered here: direct mode (qemu-aarch64-static called directly)"; fi ;;
    binfmt) register_binfmt || skip "binfmt_misc for qemu-aarch64 cannot be registered here (POCKETVIT_ARM_MODE=direct runs without it)" ;;
    direct) ;;
    *) echo "setup.sh: POCKETVIT_ARM_MODE must be auto, binfmt or direct" >&2; exit 2 ;;
esac

CACHE=${POCKETVIT_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pocketvit/arm}
# the key: this script without its comments (so that editing a comment does not rebuild 7 GB) and the cpuinfo
KEY=$(cat <(grep -v '^[[:space:]]*#' "$HERE/setup.sh") "$HERE/pi4-cpuinfo" | sha256sum | cut -c1-16)-$MODE
IMAGE=$CACHE/$KEY
if [ -f "$IMAGE/.complete" ]; then
    echo "$IMAGE"
    exit 0
fi

HOST_PY=${HOST_PY:-$ROOT/.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=$(command -v python3)
"$HOST_PY" -m pip --version >/dev/null 2>&1 || skip "$HOST_PY has no pip (set HOST_PY to a Python with pip)"

if [ -z "${DEBIAN_MIRROR:-}" ]; then
    # the Debian archive apt already uses: deb822 .sources first, then one-line sources.list entries
    DEBIAN_MIRROR=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -e security -e '^$' | head -1 || true)
    [ -n "$DEBIAN_MIRROR" ] || DEBIAN_MIRROR=$(grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) {print $i; exit}}' | grep -i debian | head -1 || true)
    DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9  # one setup at a time; a second one waits, then finds the image built
if [ -f "$IMAGE/.complete" ]; then echo "$IMAGE"; exit 0; fi
# what a killed setup left: first anything still mounted in it (an older debootstrap mounted /proc in its target
# and, killed, left it there), then the files, never crossing into another file system
findmnt -rn -o TARGET | { grep -F "$CACHE/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
rm -rf --one-file-system "$CACHE"/*.tmp
TMP=$IMAGE.tmp
mkdir -p "$TMP/wheels/rt" "$TMP/wheels/et"
R=$TMP/rootfs
T0=$(date +%s)
ENTER=(bash "$HERE/enter.sh" "$TMP")
in_pi() { nice "${ENTER[@]}" "$@"; }

# ---------------------------------------------------------------- wheels, fetched on the host
PLATFORMS=(--platform manylinux2014_aarch64)
for v in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${v}_aarch64"); done  # bookworm: glibc 2.36
PIP_AARCH64=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none "${PLATFORMS[@]}")
say "pip download (aarch64, Python 3.11): ${RT_REQS[*]}"
nice "$HOST_PY" -m pip download -q "${PIP_AARCH64[@]}" -d "$TMP/wheels/rt" "${RT_REQS[@]}" 2> >(grep -v "is ignored" >&2)

if [ "$MODE" = binfmt ]; then
    say "pip download (aarch64, Python 3.11): ${ET_REQS[*]} and their dependencies"
    nice "$HOST_PY" -m pip download -q "${PIP_AARCH64[@]}" --no-deps -d "$TMP/wheels/et" "${ET_REQS[@]}" 2> >(grep -v "is ignored" >&2)
    # pip evaluates environment markers for the machine it runs on (x86_64) even with --platform: read each
    # wheel's Requires-Dist and evaluate the markers for aarch64 Linux ourselves, then fetch those with their deps.
    mapfile -t ET_DEPS < <(nice "$HOST_PY" - "$TMP/wheels/et" <<'PY'
import sys, zipfile
from pathlib import Path
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
env = {"platform_machine": "aarch64", "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix",
       "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}
out = set()
for whl in Path(sys.argv[1]).glob("*.whl"):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                r = Requirement(line.split(":", 1)[1].strip())
                if r.marker is None or r.marker.evaluate(env):
                    r.marker = None
                    out.add(str(r))
print("\n".join(sorted(out)))
PY
    )
    # sdist-only pure-Python dependencies (a Pi's pip builds them; pip download --platform cannot): wheels built here
    nice "$HOST_PY" -m pip wheel -q --no-deps -w "$TMP/wheels/et" "${ET_SDIST_ONLY[@]}" 2> >(grep -v "is ignored" >&2)
    # executorch itself is there already (its own markers are the ones evaluated above): the rest, with their deps
    nice "$HOST_PY" -m pip download -q "${PIP_AARCH64[@]}" --find-links "$TMP/wheels/et" -d "$TMP/wheels/et" \
        "${ET_REQS[@]:1}" "${ET_DEPS[@]}" \
        2> >(grep -v "is ignored" >&2)
fi

# ---------------------------------------------------------------- Debian bookworm arm64
if [ "$MODE" = binfmt ]; then
    say "debootstrap $SUITE arm64 from $DEBIAN_MIRROR (the second stage runs under qemu: a few minutes)"
    # in its own PID namespace (with its own /proc): the packages' maintainer scripts run in the new system and must
    # see, and signal, only its processes, never this host's
    QEMU_CPU=cortex-a72 nice unshare --mount --pid --fork --kill-child --mount-proc \
        debootstrap --arch=arm64 --variant=minbase --include="$BASE_APT" \
        "$SUITE" "$R" "$DEBIAN_MIRROR" >"$TMP/debootstrap.log" 2>&1 \
        || { tail -20 "$TMP/debootstrap.log" >&2; echo "setup.sh: debootstrap failed (log: $TMP/debootstrap.log)" >&2; exit 1; }
else
    say "debootstrap --foreign $SUITE arm64 from $DEBIAN_MIRROR; every package unpacked on the host (no binfmt)"
    nice debootstrap --foreign --arch=arm64 --variant=minbase --include="$BASE_APT" \
        "$SUITE" "$R" "$DEBIAN_MIRROR" >"$TMP/debootstrap.log" 2>&1 \
        || { tail -20 "$TMP/debootstrap.log" >&2; echo "setup.sh: debootstrap failed (log: $TMP/debootstrap.log)" >&2; exit 1; }
    for deb in "$R"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$R"; done
fi

cp "$HERE/pi4-cpuinfo" "$TMP/cpuinfo"
mkdir -p "$R/sys/devices/system/cpu"
for f in possible present online; do echo 0-3 > "$R/sys/devices/system/cpu/$f"; done
echo raspberrypi > "$R/etc/hostname"
echo "127.0.1.1 raspberrypi" >> "$R/etc/hosts"
echo "$MODE" > "$TMP/mode"

if [ "$MODE" = binfmt ]; then
    security=$( (cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}';
                 grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}') | grep -- '-security' | head -1 || true)
    {
        echo "deb $DEBIAN_MIRROR $SUITE main"
        echo "deb $DEBIAN_MIRROR $SUITE-updates main"
        [ -z "$security" ] || echo "deb $security $SUITE-security main"
    } > "$R/etc/apt/sources.list"
    say "apt-get install ${PI_APT[*]} (install.sh's step 1, under qemu)"
    in_pi -- sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${PI_APT[*]} >/dev/null && apt-get clean" \
        || { echo "setup.sh: apt-get in the emulated system failed" >&2; exit 1; }
    in_pi -- useradd -m -s /bin/bash -G video pi
    in_pi -- usermod -p '*' pi  # key logins only, yet not a locked account (sshd refuses those), as a Pi's user

    say "venv /opt/pv-rt: ${RT_REQS[*]} (pip under qemu, from the downloaded wheels)"
    in_pi -- python3 -m venv /opt/pv-rt
    in_pi --bind "$TMP/wheels/rt:/wheels:ro" -- /opt/pv-rt/bin/pip install -q --no-index --find-links /wheels "${RT_REQS[@]}"
    say "venv /opt/pv-et: ${ET_REQS[*]} (pip under qemu; several GB)"
    in_pi -- python3 -m venv /opt/pv-et
    in_pi --bind "$TMP/wheels/et:/wheels:ro" -- /opt/pv-et/bin/pip install -q --no-index --find-links /wheels "${ET_REQS[@]}"
    et_mb=$(du -sm "$R/opt/pv-et" | cut -f1)
    et_dl=$(du -sm "$TMP/wheels/et" | cut -f1)
    in_pi -- /opt/pv-et/bin/pip list --format=freeze > "$TMP/pv-et.txt"
else
    say "torch-free packages into /opt/pv-rt-site (host pip, --target, aarch64 tags)"
    nice "$HOST_PY" -m pip install -q --no-warn-conflicts "${PIP_AARCH64[@]}" --no-index --find-links "$TMP/wheels/rt" \
        --target "$R/opt/pv-rt-site" "${RT_REQS[@]}" 2> >(grep -v "is ignored" >&2)
    et_mb=null
    et_dl=null
fi
rt_dl=$(du -sm "$TMP/wheels/rt" | cut -f1)
rt_mb=$( (du -sm "$R/opt/pv-rt" "$R/opt/pv-rt-site" 2>/dev/null || true) | awk '{s += $1} END {print s}')
T1=$(date +%s)
cat > "$TMP/costs.json" <<EOF
{"mode": "$MODE", "mirror": "$DEBIAN_MIRROR", "setup_seconds": $((T1 - T0)),
 "rt": {"requirements": "${RT_REQS[*]}", "download_mb": $rt_dl, "installed_mb": $rt_mb},
 "et": {"requirements": "${ET_REQS[*]}", "download_mb": $et_dl, "installed_mb": $et_mb},
 "image_mb": $(du -sm "$R" | cut -f1)}
EOF
rm -rf "$TMP/wheels"
touch "$TMP/.complete"
rm -rf --one-file-system "$IMAGE"
mv "$TMP" "$IMAGE"
for old in "$CACHE"/*/; do  # images of older versions of this script: several GB each
    [ "${old%/}" = "$IMAGE" ] || rm -rf --one-file-system "${old%/}"
done
say "built $IMAGE in $((T1 - T0)) s: $(cat "$IMAGE/costs.json" | tr -d '\n')"
echo "$IMAGE"
