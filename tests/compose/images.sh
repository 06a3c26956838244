# Sourced by run.sh: podman set-up for this machine, and the images the stack needs.
# Functions only; they use $work (a scratch folder) and $root (the repository).

# Stand-in base images, kept between runs (run.sh --fresh rebuilds them).
DEBIAN_IMAGE=localhost/hpo-compose/debian:bookworm
PYTHON_IMAGE=localhost/hpo-compose/python:3.11
UV_IMAGE=localhost/hpo-compose/uv:host
POSTGRES_IMAGE=localhost/hpo-compose/postgres:debian
BASE_IMAGES=("$POSTGRES_IMAGE" "$PYTHON_IMAGE" "$UV_IMAGE" "$DEBIAN_IMAGE")
HPO_IMAGE=hpo-worker:latest  # what docker-compose.yml's services run

# podman's settings for this run: runc (crun cannot set rlimits in this kind of sandbox), rlimits
# no higher than the host's (raising them is refused), cgroupfs and file events (no systemd).
podman_setup() {
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ] && nproc=16384
    cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    export CONTAINERS_CONF="$work/containers.conf"
}

have_image() { podman image exists "$1"; }

# Debian bookworm (minbase) from the mirror this machine's apt already uses.
debian_mirror() {
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$mirror" ]; then
        mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    fi
    [ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt sources" >&2; return 1; }
    echo "$mirror"
}

build_debian() {
    have_image "$DEBIAN_IMAGE" && return 0
    local rootfs="$work/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" > "$work/debootstrap.log" 2>&1 \
        || { tail -5 "$work/debootstrap.log" >&2; return 1; }
    tar -C "$rootfs" -c . | podman import --quiet - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

# The host's uv binaries (the pip-installed wheel when there is one), in the uv image's layout.
host_uv() {
    local bin
    bin=$(python3 -c "import uv; print(uv.find_uv_bin())" 2>/dev/null || true)
    [ -n "$bin" ] || bin=$(readlink -f "$(command -v uv)")
    echo "$bin"
}

build_uv() {
    have_image "$UV_IMAGE" && return 0
    local bin context="$work/uv-context"
    bin=$(host_uv)
    mkdir -p "$context"
    cp "$bin" "$context/uv"
    cp "$(dirname "$bin")/uvx" "$context/uvx"
    podman build --quiet -f "$here/uv.Containerfile" -t "$UV_IMAGE" "$context" >/dev/null
}

build_from_debian() {  # IMAGE CONTAINERFILE CONTEXT
    have_image "$1" && return 0
    podman build --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" -f "$here/$2" -t "$1" "$3" \
        > "$work/build-$2.log" 2>&1 || { tail -20 "$work/build-$2.log" >&2; return 1; }
}

build_python() {
    local context="$work/python-context"
    mkdir -p "$context/certs"
    find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$context/certs/" \; \
        2>/dev/null || true
    build_from_debian "$PYTHON_IMAGE" python.Containerfile "$context"
}

build_postgres() {
    build_from_debian "$POSTGRES_IMAGE" postgres.Containerfile "$here"
}

# The repository's Dockerfile on the stand-ins. The host's uv cache is bind-mounted and named by
# UV_CACHE_DIR, so the locked wheels (a large torch among them) are not downloaded again.
build_hpo() {
    local cache
    cache=$(uv cache dir)
    podman build --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg UV_IMAGE="$UV_IMAGE" \
        --build-arg UV_CACHE_DIR=/host-uv-cache -v "$cache:/host-uv-cache" \
        -t "$HPO_IMAGE" "$root" > "$work/build-hpo.log" 2>&1 \
        || { tail -30 "$work/build-hpo.log" >&2; return 1; }
}
