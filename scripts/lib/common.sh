# Shared by scripts/test, scripts/demo and tests/install/run: the Debian
# packages the project needs and how it is built. Source it; it defines
# functions only.

# Build: compilers and -dev packages, debhelper for the Debian package. Run:
# Debian's Ceph 16.2 daemons and Dovecot 2.3.19 (with its -dev headers for
# the plugin), and Pigeonhole (Sieve in LMTP, ManageSieve: the Sieve
# storage's tests). Test: pytest, and gdb (tests/imap/test_watch_close.py
# holds a librados thread in it).
RBD_PACKAGES=(
    cmake g++ make pkg-config clang libclang-rt-14-dev clang-format
    build-essential debhelper
    librados-dev libradospp-dev libxxhash-dev
    googletest libgtest-dev libbenchmark-dev
    ceph-mon ceph-osd ceph-mgr ceph-common python3-rados
    dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-dev
    dovecot-sieve dovecot-managesieved
    python3-pytest gdb
)

RBD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Installs whatever of RBD_PACKAGES is missing (apt-get update first). A
# machine that has them all is left alone, so repeated runs stay fast.
install_packages() {
    local missing=() pkg
    for pkg in "${RBD_PACKAGES[@]}"; do
        package_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    # dovecot-core and the Ceph packages start their services on install;
    # the project runs its own daemons on 127.0.0.1 only, so deny that
    # (the standard policy-rc.d way) unless the machine already does.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
    if ((added_policy)); then "${sudo[@]}" rm -f "$policy"; fi
}

# Release build of the core, tests and benchmarks in build/.
build_project() {
    cmake -S "$RBD_ROOT" -B "$RBD_ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$RBD_ROOT/build" -j "$(nproc)" >/dev/null
}

# The libFuzzer target needs clang: a build of its own in build-fuzz/.
build_fuzzer() {
    CC=clang CXX=clang++ cmake -S "$RBD_ROOT" -B "$RBD_ROOT/build-fuzz" -DRBD_BUILD_FUZZ=ON >/dev/null
    cmake --build "$RBD_ROOT/build-fuzz" -j "$(nproc)" --target record_decoder_fuzz >/dev/null
}
