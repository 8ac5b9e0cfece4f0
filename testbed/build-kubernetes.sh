#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from Debian bookworm's
# kubernetes source package (upstream v1.20.2 with vendor/) and caches them by version.
# Installs what the build and the test cluster need (Debian packages) when missing.
# Usage: testbed/build-kubernetes.sh            -> prints the cache directory holding the binaries
set -euo pipefail

K8S_VERSION="${EBBTIDE_K8S_VERSION:-v1.20.2}"
DEB_VERSION="${EBBTIDE_K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/ebbtide/kubernetes"
CACHE_DIR="$CACHE_ROOT/$K8S_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
APT_PACKAGES=(golang-go rsync etcd-server openssl dpkg-dev iproute2
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)

log() { echo "build-kubernetes: $*" >&2; }

cached() {
    for binary in "${BINARIES[@]}"; do
        [[ -x "$CACHE_DIR/bin/$binary" ]] || return 1
    done
}

install_packages() {
    local missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        if [[ $(id -u) -ne 0 ]]; then
            log "need root to apt-get install ${missing[*]}; install them and run again"
            exit 1
        fi
        if ! apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2; then
            apt-get update -q -o DPkg::Lock::Timeout=600 >&2
            apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
        fi
    fi
}

fetch_source() {
    # A private apt state so the machine's own sources and lists stay untouched.
    local apt_dir="$1/apt" src_dir="$1/src"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src_dir"
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    uri="${uri:-http://deb.debian.org/debian}"
    echo "deb-src $uri bookworm main" > "$apt_dir/sources.list"
    local apt_options=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
        -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache" -o "APT::Get::List-Cleanup=0")
    log "fetching kubernetes=$DEB_VERSION source from $uri"
    apt-get "${apt_options[@]}" update -q >&2
    (cd "$src_dir" && apt-get "${apt_options[@]}" source --download-only \
        "kubernetes=$DEB_VERSION" >&2)
    (cd "$src_dir" && dpkg-source --no-check -x ./*.dsc tree >&2)
}

replace_vendored() {
    # reflect2 1.0.1 (and the json-iterator built on it) faults under Go >= 1.18:
    # the apiserver crashes on the first custom-resource write. Debian's newer sources fix it.
    local tree="$1" module
    for module in github.com/modern-go/reflect2 github.com/json-iterator/go; do
        local vendored="$tree/vendor/$module" packaged="/usr/share/gocode/src/$module"
        [[ -d "$packaged" ]] || { log "missing $packaged"; exit 1; }
        find "$vendored" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
        find "$packaged" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) \
            ! -name '*_test.go' -exec cp {} "$vendored/" \;
    done
}

build() {
    local tree="$1" scratch_home="$2"
    log "building ${BINARIES[*]} (several minutes)"
    (cd "$tree" && HOME="$scratch_home" GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 \
        make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >&2)
    local staging="$CACHE_DIR.partial"
    rm -rf "$staging" && mkdir -p "$staging/bin"
    for binary in "${BINARIES[@]}"; do
        cp "$tree/_output/local/bin/linux/"*/"$binary" "$staging/bin/"
    done
    echo "$DEB_VERSION" > "$staging/debian-source-version"
    rm -rf "$CACHE_DIR" && mv "$staging" "$CACHE_DIR"
}

main() {
    install_packages
    if cached; then
        echo "$CACHE_DIR"
        return
    fi
    mkdir -p "$CACHE_ROOT"
    BUILD_DIR=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
    trap 'rm -rf "$BUILD_DIR"' EXIT
    local work="$BUILD_DIR"
    local started=$SECONDS
    fetch_source "$work"
    replace_vendored "$work/src/tree"
    mkdir -p "$work/home"
    build "$work/src/tree" "$work/home"
    log "built in $((SECONDS - started)) s into $CACHE_DIR"
    echo "$CACHE_DIR"
}

main "$@"
