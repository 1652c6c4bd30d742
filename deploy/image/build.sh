#!/usr/bin/env bash
# Builds the image creator-boost:local with podman or docker, from the one
# Dockerfile at the top of the checkout:
#
#   deploy/image/build.sh                # from source if the rust image can
#                                        # be had, else from the host binary
#   deploy/image/build.sh --from-source  # the whole Dockerfile (rust image)
#   deploy/image/build.sh --from-host    # cargo build --release here, then
#                                        # only the runtime stage
#
# From the host, the runtime stage's base (debian:bookworm-slim) is pulled,
# or, where no registry is reachable, made from Debian packages with
# mmdebstrap and imported under the same name (needs root and mmdebstrap;
# about two minutes, once per machine).
#
# Environment: CONTAINER_ENGINE (podman or docker; default the first that
# answers), IMAGE (default creator-boost:local), DEBIAN_MIRROR (for
# mmdebstrap; default its own choice), CARGO_TARGET_DIR (as for cargo).
# With docker, BuildKit is needed (docker buildx, or a docker CLI older
# than 23 with DOCKER_BUILDKIT=1): the legacy builder builds every stage
# of the Dockerfile, the rust one included. docs/container.md has more.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
image=${IMAGE:-creator-boost:local}
mode=auto
for arg in "$@"; do
  case "$arg" in
    --from-source) mode=source ;;
    --from-host) mode=host ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "build.sh: unknown argument $arg (--from-source, --from-host)" >&2
      exit 2
      ;;
  esac
done

say() { echo "build.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}
started=$SECONDS
step_started=$SECONDS
step() {
  say "$* (${SECONDS}s since start)"
  step_started=$SECONDS
}
took() { echo "$((SECONDS - step_started))s"; }

# ------------------------------------------------------------------ engine
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  for candidate in podman docker; do
    if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then
      engine=$candidate
      break
    fi
  done
fi
[ -n "$engine" ] || die "neither podman nor docker answers (see docs/container.md)"
build_args=()
case "$engine" in
  podman)
    # The docker image format keeps HEALTHCHECK (OCI has no field for it).
    build_args+=(--format docker)
    ;;
  docker)
    export DOCKER_BUILDKIT=1
    if ! docker buildx version >/dev/null 2>&1; then
      client=$(docker version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
      [ "${client%%.*}" -lt 23 ] 2>/dev/null \
        || die "docker $client needs the buildx plugin for BuildKit; the legacy builder builds every stage"
    fi
    ;;
  *) die "CONTAINER_ENGINE=$engine: podman or docker" ;;
esac

# The images the Dockerfile names, read from it so they are written once.
builder_image=$(sed -n 's/^FROM \([^ ]*\) AS chef$/\1/p' "$repo/Dockerfile")
base_image=$(sed -n 's/^FROM \([^ ]*\) AS runtime$/\1/p' "$repo/Dockerfile")
[ -n "$builder_image" ] && [ -n "$base_image" ] || die "Dockerfile: no chef or runtime stage"

have_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }
pull() { "$engine" pull "$1" >/dev/null 2>&1; }

if [ "$mode" = auto ]; then
  if have_image "$builder_image" || pull "$builder_image"; then
    mode=source
  else
    say "$builder_image cannot be pulled: building from the host binary"
    mode=host
  fi
fi

# ------------------------------------------------------- labels (both ways)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)
if [ -n "$revision" ] && [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
source_url=$(git -C "$repo" remote get-url origin 2>/dev/null || true)
build_args+=(
  --build-arg "VERSION=$version"
  --build-arg "REVISION=$revision"
  --build-arg "SOURCE_URL=$source_url"
)

# ------------------------------------------------- from the host: binary, base
if [ "$mode" = host ]; then
  step "cargo build --release --locked --bin creator-boost"
  (cd "$repo" && cargo build --release --locked --bin creator-boost)
  target_dir=${CARGO_TARGET_DIR:-$repo/target}
  case "$target_dir" in /*) ;; *) target_dir=$repo/$target_dir ;; esac
  command -v strip >/dev/null || die "strip not found (apt-get install binutils)"
  mkdir -p "$repo/target/image"
  # As the Dockerfile's builder stage does: no debug info, symbols kept.
  strip --strip-debug -o "$repo/target/image/creator-boost" "$target_dir/release/creator-boost"
  say "binary: $(du -h "$target_dir/release/creator-boost" | cut -f1) built, $(du -h "$repo/target/image/creator-boost" | cut -f1) stripped ($(took))"

  if have_image "$base_image"; then
    say "base $base_image: present"
  elif step "pulling $base_image" && pull "$base_image"; then
    say "base $base_image: pulled ($(took))"
  else
    # debian:bookworm-slim -> bookworm: Debian's own package set (minbase:
    # Essential and Priority required, plus apt) without docs, man pages
    # and translations, as the slim images are made.
    case "$base_image" in
      debian:*-slim) suite=${base_image#debian:} suite=${suite%-slim} ;;
      *) die "$base_image cannot be pulled, and only a debian:SUITE-slim base can be made here" ;;
    esac
    command -v mmdebstrap >/dev/null || die "$base_image cannot be pulled and mmdebstrap is missing (apt-get install mmdebstrap)"
    step "making $base_image with mmdebstrap --variant=minbase $suite"
    mirror=()
    [ -z "${DEBIAN_MIRROR:-}" ] || mirror=("$DEBIAN_MIRROR")
    mmdebstrap --variant=minbase --quiet \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --aptopt='APT::Install-Recommends "false"' \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-include=/usr/share/locale/locale.alias' \
      "$suite" - "${mirror[@]}" \
      | "$engine" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        - "docker.io/library/$base_image" >/dev/null
    have_image "$base_image" || die "$base_image: the import did not take"
    say "base $base_image: made from Debian packages ($(took))"
  fi
  build_args+=(--build-arg BINARY=host)
fi

# ------------------------------------------------------------------- build
step "$engine build ($mode) -t $image"
"$engine" build "${build_args[@]}" -t "$image" -f "$repo/Dockerfile" "$repo" >&2
size=$("$engine" image inspect "$image" --format '{{.Size}}')
say "built $image from $mode in $(took) with $engine: $((size / 1000000)) MB ($size bytes); $((SECONDS - started))s in all"
