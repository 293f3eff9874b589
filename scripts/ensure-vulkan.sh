#!/usr/bin/env bash
# Makes sure a Vulkan driver is installed for the wgpu tests: any ICD manifest is enough (a
# real GPU's, or Mesa's software "lavapipe"). Installs Mesa's with apt-get when it can (root or
# passwordless sudo on Debian/Ubuntu); otherwise says what to install and fails, because the
# wgpu tests fail, not skip, without an adapter.
set -euo pipefail

have_icd() {
  local f icd=0 loader=0
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -e "$f" ] && icd=1
  done
  for f in /usr/lib/*/libvulkan.so.1 /usr/lib/libvulkan.so.1 /lib/*/libvulkan.so.1; do
    [ -e "$f" ] && loader=1
  done
  [ "$icd" = 1 ] && [ "$loader" = 1 ]
}

if have_icd; then
  exit 0
fi
pkgs="mesa-vulkan-drivers libvulkan1"
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  fi
fi
if have_icd; then
  echo "ensure-vulkan: installed $pkgs (software Vulkan for the wgpu tests)"
  exit 0
fi
echo "ensure-vulkan: no Vulkan driver found; install one (Debian/Ubuntu: apt-get install $pkgs; macOS uses Metal and needs nothing)" >&2
[ "$(uname)" = Darwin ] && exit 0
exit 1
