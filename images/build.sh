#!/usr/bin/env bash
# Builds the Switchyard images for this machine's architecture without a Docker daemon:
# static release binaries (cargo), then FROM-scratch images (buildah, vfs storage).
#
#   images/build.sh            binaries + images
#   images/build.sh binaries   only the build context: $CONTEXT/dist/linux-<arch>/{switchyard-proxy,
#                              switchyard-operator} and $CONTEXT/dist/ca-certificates.crt
#                              (the release workflow builds each architecture this way)
#   images/build.sh images     only the images, from an existing context
#
# Environment: CONTEXT (default target/image/context), IMAGE_PREFIX (default
# ghcr.io/switchyard, the chart's repositories), TAG (default: the chart's appVersion),
# CARGO_TARGET_DIR (default target/image: its own cargo lock and cache, apart from the debug
# builds in target/), PROFILE (default release; CI uses `dev`: the same static recipe,
# checked the same way, in a third of the build time — published images are always release).
# Images are stored with buildah's vfs driver (STORAGE_DRIVER=vfs).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
case "$mode" in all | binaries | images) ;; *) echo "usage: $0 [all|binaries|images]" >&2; exit 2 ;; esac

case "$(uname -m)" in
  x86_64) arch=amd64 triple=x86_64-unknown-linux-gnu ;;
  aarch64 | arm64)
    arch=arm64 triple=aarch64-unknown-linux-gnu
    # DGX Spark and other arm64 hosts may run 64 KiB pages: jemalloc built for 4 KiB pages
    # fails there ("Unsupported system page size"); a 64 KiB build works on both.
    export JEMALLOC_SYS_WITH_LG_PAGE=16
    ;;
  *) echo "build.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

context=${CONTEXT:-target/image/context}
prefix=${IMAGE_PREFIX:-ghcr.io/switchyard}
tag=${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/switchyard/Chart.yaml)}
[ -n "$tag" ] || { echo "build.sh: no appVersion in charts/switchyard/Chart.yaml" >&2; exit 1; }
export STORAGE_DRIVER=vfs

binaries() {
  # Static glibc: getaddrinfo works inside a scratch image only because glibc >= 2.34 has the
  # `files` and `dns` NSS modules inside libc (older ones dlopen libnss_dns.so.2, absent there).
  local glibc
  glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  if ! printf '2.34\n%s\n' "$glibc" | sort -V -C; then
    echo "build.sh: glibc $glibc on this host; static binaries need >= 2.34 to resolve names in a scratch image" >&2
    exit 1
  fi
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/image}
  # `--target` keeps +crt-static away from build scripts and proc macros (they stay dynamic
  # host programs). The image binaries keep their symbols (function names in backtraces) but
  # not the workspace's `debug = 1` line tables (for profiling; only size in an image).
  local start=$SECONDS profile=${PROFILE:-release} dir
  case "$profile" in release) dir=release ;; dev) dir=debug ;; *) dir=$profile ;; esac
  RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_DEV_STRIP=debuginfo \
    cargo build --profile "$profile" --locked --target "$triple" -p switchyard-proxy -p switchyard-operator
  echo "build.sh: cargo build --profile $profile ($triple, static): $((SECONDS - start)) s"

  local out="$context/dist/linux-$arch"
  mkdir -p "$out"
  for bin in switchyard-proxy switchyard-operator; do
    install -m 0755 "$CARGO_TARGET_DIR/$triple/$dir/$bin" "$out/$bin"
    # `file` says "static-pie linked" (or "statically linked"); ldd must find nothing to load.
    if ! file "$out/$bin" | grep -Eq 'static-pie linked|statically linked'; then
      echo "build.sh: $out/$bin is not static: $(file "$out/$bin")" >&2
      exit 1
    fi
    if ldd "$out/$bin" 2>&1 | grep -q '=>'; then
      echo "build.sh: $out/$bin loads shared libraries:" >&2
      ldd "$out/$bin" >&2
      exit 1
    fi
    printf 'build.sh: %s: %s bytes, %s\n' "$out/$bin" "$(stat -c %s "$out/$bin")" \
      "$(file -b "$out/$bin" | grep -Eo 'static-pie linked|statically linked')"
  done
  # The CA bundle of the build host's Debian/Ubuntu ca-certificates package.
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$context/dist/ca-certificates.crt"
}

images() {
  command -v buildah >/dev/null || { echo "build.sh: buildah is not installed (apt-get install buildah)" >&2; exit 1; }
  for bin in switchyard-proxy switchyard-operator; do
    [ -x "$context/dist/linux-$arch/$bin" ] || { echo "build.sh: no $context/dist/linux-$arch/$bin; run '$0 binaries' first" >&2; exit 1; }
  done
  for target in proxy operator; do
    # The previous build of this tag goes first: vfs keeps full copies, so untagged leftovers
    # would pile up run after run.
    if buildah inspect --type image "$prefix/switchyard-$target:$tag" >/dev/null 2>&1; then
      buildah rmi "$prefix/switchyard-$target:$tag" >/dev/null
    fi
    # FROM scratch + COPY only: nothing is pulled and nothing runs, so no runtime is needed.
    buildah build --quiet --file images/Containerfile --target "$target" \
      --platform "linux/$arch" --build-arg "TARGETARCH=$arch" --build-arg "VERSION=$tag" \
      --tag "$prefix/switchyard-$target:$tag" "$context" >/dev/null
    echo "build.sh: built $prefix/switchyard-$target:$tag (linux/$arch)"
  done
  buildah images --filter "reference=$prefix/switchyard-*:$tag"
}

case "$mode" in
  all) binaries; images ;;
  binaries) binaries ;;
  images) images ;;
esac
