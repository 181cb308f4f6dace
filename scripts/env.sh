# Sourced by the other scripts: the environment every qgpu command runs in.
# Vulkan's loader and Mesa write to XDG_RUNTIME_DIR; it must exist with mode 700.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/qgpu-runtime-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR"
fi
chmod 700 "$XDG_RUNTIME_DIR"
# Prefer Vulkan: the GL backend also finds lavapipe's EGL sibling and logs a harmless error.
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
export QGPU_CACHE_DIR="${QGPU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qgpu}"
