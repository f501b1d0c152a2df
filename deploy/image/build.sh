#!/bin/sh
# Builds build/trtc-recording-monitor-<version>.oci.tar: an OCI image archive made without any
# container registry (called by `make image`).
#
#   1. A Debian root filesystem from Debian's own packages (mmdebstrap), cached as a tarball
#      under build/cache/ keyed by the suite, the mirror and the package list.
#   2. The project's wheel and its dependencies' wheels, built on this machine with pip, then
#      installed into a virtual environment made by the root filesystem's own python3 (Debian's)
#      inside a chroot, so the environment runs in the image.
#   3. umoci: an empty image, the Debian layer, the application layer, the image config.
#
# Reproducible: with SOURCE_DATE_EPOCH (default: the commit's time) every file time is clamped,
# bytecode is compiled with hash-based invalidation, and the image and history times are fixed,
# so two builds of one commit give the same layer digests.
#
# Needs root (chroot, file ownership), mmdebstrap, umoci and Debian's package mirror.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

SUITE=${SUITE:-bookworm}
PYTHON=${PYTHON:-python3}
BUILD=${BUILD:-$ROOT/build}
# Debian packages of the root filesystem; python3-venv brings python3 and pip's wheel.
PACKAGES="python3-venv,ca-certificates,tzdata"
UID_GID=10001
APP=/opt/trtc-monitor
DATA=/var/lib/trtc-monitor
CONF=/etc/trtc-monitor
PORT=9877
NAME=trtc-recording-monitor
SOURCE_URL=${SOURCE_URL:-https://github.com/trtc-recording-monitor/trtc-recording-monitor}

log() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (chroot and file ownership): run 'sudo make image'"
for tool in mmdebstrap umoci tar chroot; do
  command -v "$tool" >/dev/null || die "$tool is missing: run 'make system-deps'"
done

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' monitor/__init__.py)
[ -n "$VERSION" ] || die "no __version__ in monitor/__init__.py"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# The mirror this machine's apt uses (deb822 or one-line format).
mirror() {
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ {print $2; exit}' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' "$f"
  done
}
MIRROR=${MIRROR:-$(mirror | grep -m1 'debian/\?$' || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

mkdir -p "$BUILD/cache"
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$(cat "$0" | sed -n '/^# rootfs-recipe/,/^# end-rootfs-recipe/p')" \
  | sha256sum | cut -c1-16)
ROOTFS_TAR="$BUILD/cache/rootfs-$SUITE-$KEY.tar"

# rootfs-recipe (part of the cache key)
if [ ! -f "$ROOTFS_TAR" ]; then
  log "debootstrapping $SUITE from $MIRROR (cached as $ROOTFS_TAR)"
  # The essential set plus our packages; no documentation, manuals or translations.
  rm -f "$ROOTFS_TAR.tmp"
  # A fixed time for the root filesystem (bookworm's release day), not the commit's: the same
  # packages give the same Debian layer, whichever commit or machine builds it.
  SOURCE_DATE_EPOCH=1686355200 mmdebstrap --variant=essential --format=tar --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$SUITE" "$ROOTFS_TAR.tmp" "$MIRROR"
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  # Older recipes' tarballs (about 150 MB each) are of no further use.
  find "$BUILD/cache/" -maxdepth 1 -name 'rootfs-*.tar' ! -name "${ROOTFS_TAR##*/}" -delete
fi
# end-rootfs-recipe

WORK="$BUILD/image-work"
# A leftover work dir of an interrupted build may still have /dev or /proc mounted.
cleanup() {
  for m in proc dev; do
    if mountpoint -q "$WORK/bundle/rootfs/$m" 2>/dev/null; then umount -l "$WORK/bundle/rootfs/$m"; fi
  done
}
trap cleanup EXIT INT TERM
cleanup
# --one-file-system: never into a mount left behind, whatever happened before.
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK/wheels"

IMAGE="$WORK/oci"
TAG=$VERSION
umoci init --layout "$IMAGE"
umoci new --image "$IMAGE:$TAG"
umoci config --image "$IMAGE:$TAG" --no-history --created "$CREATED" --os linux --architecture amd64
umoci unpack --image "$IMAGE:$TAG" "$WORK/bundle"
R="$WORK/bundle/rootfs"

# Layer 1: Debian. Every file time is clamped so the layers' tarballs depend on content only.
tar -C "$R" -xf "$ROOTFS_TAR"
clamp() { find "$R" -newermt "@$SOURCE_DATE_EPOCH" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +; }
clamp
# --refresh-bundle: the next repack diffs against this layer, not against the empty image.
umoci repack --image "$IMAGE:$TAG" --refresh-bundle --history.created "$CREATED" \
  --history.created_by "mmdebstrap --variant=essential --include=$PACKAGES $SUITE" \
  --history.comment "Debian $SUITE" "$WORK/bundle"

# The project's wheel, then every dependency as a binary wheel, resolved by pip running on the
# image's own python3 (dependency markers such as python_full_version < "3.11.3" depend on its
# exact version), with this machine's pip configuration (index, certificates).
IMAGE_PYTHON=$(chroot "$R" python3 -c 'import platform; print(platform.python_version())')
log "building the wheel; dependencies' wheels for the image's Python $IMAGE_PYTHON"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheels" "$ROOT"
WHEEL=$(ls "$WORK"/wheels/trtc_recording_monitor-*.whl)
if ! "$PYTHON" -m pip --python "$R/usr/bin/python3" download --quiet --only-binary=:all: \
  --dest "$WORK/wheels" "$WHEEL" 2>"$WORK/pip.log"; then
  grep -v "^WARNING: Location" "$WORK/pip.log" >&2
  die "pip could not download the dependencies' wheels"
fi

# Layer 2: the user, the directories and the virtual environment, made by Debian's python3.
log "installing the wheel into $APP with Debian's python3 (chroot)"
mount --bind /dev "$R/dev"
mount -t proc proc "$R/proc"
mkdir -p "$R/opt/wheels"
cp "$WORK"/wheels/*.whl "$R/opt/wheels/"
chroot "$R" /bin/sh -eu -c "
  # The essential set has no useradd: the account is two lines, no password, no login.
  echo 'trtc:x:$UID_GID:' >>/etc/group
  echo 'trtc:x:$UID_GID:$UID_GID:trtc-recording-monitor:$DATA:/usr/sbin/nologin' >>/etc/passwd
  install -d -o $UID_GID -g $UID_GID -m 0750 $DATA
  install -d -m 0755 $CONF
  python3 -m venv --without-pip $APP
  # pip from Debian's wheel, run once; the environment itself carries no pip.
  PIP=\$(ls /usr/share/python-wheels/pip-*.whl)
  $APP/bin/python \$PIP/pip install --no-index --find-links /opt/wheels --quiet \
    --no-compile --disable-pip-version-check --no-cache-dir $NAME==$VERSION
  # Bytecode once, with hash-based invalidation: no source time inside, same bytes every build.
  $APP/bin/python -m compileall -q -j 1 --invalidation-mode unchecked-hash $APP/lib >/dev/null
  rm -rf /opt/wheels
"
cleanup
rm -rf "$R/root/.cache"
clamp
umoci repack --image "$IMAGE:$TAG" --history.created "$CREATED" \
  --history.created_by "deploy/image/build.sh: pip install $NAME==$VERSION into $APP" \
  --history.comment "$NAME $VERSION" "$WORK/bundle"

# The image config: the same user, entrypoint, command, paths and port as deploy/Dockerfile.
umoci config --image "$IMAGE:$TAG" --no-history --created "$CREATED" \
  --author "$NAME" \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint trtc-monitor \
  --config.cmd run --config.cmd -c --config.cmd "$CONF/monitor.yaml" \
  --config.env "PATH=$APP/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.env PYTHONUNBUFFERED=1 \
  --config.env "TRTC_MONITOR_CONFIG=$CONF/monitor.yaml" \
  --config.workingdir "$DATA" \
  --config.volume "$DATA" \
  --config.exposedports "$PORT/tcp" \
  --config.label "org.opencontainers.image.title=$NAME" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.revision=$REVISION" \
  --config.label "org.opencontainers.image.source=$SOURCE_URL" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.created=$CREATED" \
  --manifest.annotation "org.opencontainers.image.version=$VERSION" \
  --manifest.annotation "org.opencontainers.image.revision=$REVISION"
umoci gc --layout "$IMAGE"

OUT="$BUILD/$NAME-$VERSION.oci.tar"
tar -C "$IMAGE" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -cf "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
echo "$REVISION" >"$OUT.revision"
rm -rf --one-file-system "$WORK"
log "built $OUT (tag $TAG)"
