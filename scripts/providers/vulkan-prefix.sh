#!/usr/bin/env bash
# Builds a throwaway Vulkan prefix for `npm run test:providers`: Mesa's Vulkan drivers from Debian
# bookworm-backports (Mesa 25, whose llvmpipe WebGPU can use, as Ubuntu 24.04 and Debian 13 ship),
# with the Vulkan loader, extracted under .cache/providers/vulkan with `dpkg -x`. Nothing is
# installed: the machine stays as it was (removing libvulkan1 with apt would also remove chromium).
# Package lists live in .cache/providers/apt, apart from the system's.
#
# Always exits 0 and writes .cache/providers/status.json: {"ok": true, "prefix": …, "icd": …}
# or {"ok": false, "reason": …}, which the tests read to run or to say why they skip.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache/providers"
status="$cache/status.json"
prefix="$cache/vulkan"
mkdir -p "$cache"

fail() {
  printf '{"ok": false, "reason": %s}\n' "$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" > "$status"
  echo "test:providers: cannot set up the Vulkan driver: $1" >&2
  exit 0
}

[ "$(uname -s)" = Linux ] || fail "WebGPU provider tests need Linux (this is $(uname -s))"
[ "$(uname -m)" = x86_64 ] || fail "WebGPU provider tests need x86_64 (this is $(uname -m))"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || fail "no apt-get/dpkg: not a Debian machine"
grep -q '^12\.' /etc/debian_version 2>/dev/null || fail "expects Debian 12 (bookworm), found $(cat /etc/debian_version 2>/dev/null || echo 'no /etc/debian_version')"

icd="$prefix/usr/share/vulkan/icd.d/lvp_icd.json"
lib="$prefix/usr/lib/x86_64-linux-gnu"
if [ -f "$icd" ] && [ -f "$lib/libvulkan.so.1" ] && [ -f "$lib/libvulkan_lvp.so" ]; then
  echo "test:providers: Vulkan prefix ready in $prefix"
else
  rm -rf "$prefix" "$cache/debs"
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$prefix"
  cat > "$cache/apt/sources.list" <<'LIST'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-backports main
LIST
  apt_opts=(-o "Dir::Etc::sourcelist=$cache/apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" -qq update >"$cache/apt.log" 2>&1 ||
    fail "apt-get update of bookworm-backports failed (see $cache/apt.log)"
  packages=(mesa-vulkan-drivers/bookworm-backports mesa-libgallium/bookworm-backports libvulkan1
    libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports libdrm-intel1/bookworm-backports
    libdrm-nouveau2/bookworm-backports libdrm-radeon1/bookworm-backports)
  # llvmpipe links LLVM 15; chromium's Mesa usually brings it, fetch it otherwise.
  ldconfig -p | grep -q 'libLLVM-15.so.1' || packages+=(libllvm15)
  (cd "$cache/debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]}" >>"$cache/apt.log" 2>&1) ||
    fail "apt-get download of Mesa's Vulkan drivers failed (see $cache/apt.log)"
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$prefix" || fail "dpkg -x $deb failed"; done
  [ -f "$icd" ] || fail "the extracted packages hold no $icd"
  missing=$(LD_LIBRARY_PATH="$lib" ldd "$lib/libvulkan_lvp.so" | grep 'not found' || true)
  [ -z "$missing" ] || fail "llvmpipe's Vulkan driver misses libraries: $missing"
  echo "test:providers: Vulkan prefix built in $prefix"
fi
version=$(ls "$cache"/debs/mesa-vulkan-drivers_*.deb 2>/dev/null | sed 's/.*mesa-vulkan-drivers_\([^_]*\)_.*/\1/')
printf '{"ok": true, "prefix": "%s", "lib": "%s", "icd": "%s", "mesa": "%s"}\n' "$prefix" "$lib" "$icd" "${version:-unknown}" > "$status"
