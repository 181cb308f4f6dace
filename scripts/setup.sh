#!/usr/bin/env bash
# Installs what qgpu needs on a fresh Debian machine, only where it is missing:
# a Vulkan loader and, when no Vulkan device exists, Mesa's lavapipe (a CPU Vulkan driver).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  echo "setup: installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have_vulkan_device() {
  command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null | grep -q deviceName
}
if ! have_vulkan_device; then
  apt_install mesa-vulkan-drivers libvulkan1 vulkan-tools
fi
if ! have_vulkan_device; then
  echo "setup: no Vulkan device even after installing lavapipe" >&2
  exit 1
fi
