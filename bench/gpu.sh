#!/usr/bin/env bash
# giftwrap's webgpu backend against PyTorch CUDA, on an NVIDIA GPU machine that has no network.
#
#   bench/gpu.sh pack              # here, with the registries: writes .gpu/ (git-ignored)
#   bench/gpu.sh [bench flags…]    # there, in the repository root, with .gpu/ carried along
#   bench/gpu.sh profile [--config large]   # there: bench/profile.ts, time by kernel on both sides
#   bench/gpu.sh tests [deno test flags…]  # there: the webgpu tests (bench/gpu_tests.ts) on its GPU
#   bench/gpu.sh host [steps] [warm-up]     # there: bench/webgpu_host.ts, the warm step's host time
#
# `pack` puts into .gpu/ everything the GPU machine cannot fetch:
#   deno.xz             this Deno binary, xz-compressed (about 31 MB from 96)
#   giftwrap-bench.js   bench/gpu.ts bundled: the bench and giftwrap's worker, tfjs and every other
#                       npm package inside, so nothing is resolved or downloaded there
#   webgpu-tests.js     bench/gpu_tests.ts bundled likewise: the webgpu tests CI runs on lavapipe
#   webgpu-host.js      bench/webgpu_host.ts bundled likewise
#   vulkan/*.deb        Debian's Vulkan loader (libvulkan1) and the GL dispatch libraries NVIDIA's
#                       Vulkan driver links against, unpacked there only when it lacks a loader
#
# Run there, it unpacks Deno and (when needed) the loader into a temporary directory, checks that
# WebGPU sees the GPU and that python3's torch sees CUDA, then runs the same bench as
# `deno task bench` (bench/bench.ts): giftwrap on `--backends webgpu` against bench/torch_ref.py
# on `--torch-device cuda` under `python3`, front-door and large by default. The table goes to
# stdout and is appended to bench/RESULTS.md; flags after the defaults override them, e.g.
# `bench/gpu.sh --configs front-door --runs 3 --no-append`. GIFTWRAP_PYTHON picks the interpreter.
#
# Locally, `GIFTWRAP_GPU_TORCH_DEVICE=cpu bench/gpu.sh --configs front-door …` runs the same path on
# lavapipe (Debian's mesa-vulkan-drivers) against PyTorch on the CPU, to try the pack before a
# GPU machine is at hand.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
pack_dir=".gpu"
bundle="$pack_dir/giftwrap-bench.js"

pack() {
  command -v deno >/dev/null || { echo "bench/gpu.sh pack: needs deno on PATH" >&2; exit 2; }
  rm -rf "$pack_dir.tmp"
  mkdir -p "$pack_dir.tmp/vulkan"
  deno install --quiet # node_modules, which the bundler reads
  deno bundle --quiet --platform deno -o "$pack_dir.tmp/giftwrap-bench.js" bench/gpu.ts
  deno bundle --quiet --platform deno -o "$pack_dir.tmp/webgpu-tests.js" bench/gpu_tests.ts
  deno bundle --quiet --platform deno -o "$pack_dir.tmp/webgpu-host.js" bench/webgpu_host.ts
  local exe
  exe="$(deno eval --quiet 'console.log(Deno.execPath())')"
  echo "compressing $exe ($(du -h "$exe" | cut -f1))" >&2
  xz -T0 -6 -c "$exe" >"$pack_dir.tmp/deno.xz"
  (cd "$pack_dir.tmp/vulkan" &&
    apt-get download -q libvulkan1 libglvnd0 libgl1 libglx0 libegl1 libgles2 libopengl0 \
      >/dev/null 2>&1) || { echo "bench/gpu.sh pack: apt-get download failed" >&2; exit 1; }
  rm -rf "$pack_dir"
  mv "$pack_dir.tmp" "$pack_dir"
  du -sh "$pack_dir"/* >&2
}

# xz, or Python's lzma where the machine has no xz
unxz_to() {
  if command -v xz >/dev/null; then
    xz -dc "$1" >"$2"
  else
    "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
  fi
}

run() {
  for f in "$bundle" "$pack_dir/deno.xz"; do
    [[ -f "$f" ]] || {
      echo "bench/gpu.sh: $f is missing; run 'bench/gpu.sh pack' where the registries are reachable and carry $pack_dir/ along" >&2
      exit 2
    }
  done
  python="${GIFTWRAP_PYTHON:-python3}"
  local device="${GIFTWRAP_GPU_TORCH_DEVICE:-cuda}"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/giftwrap-gpu.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  export XDG_RUNTIME_DIR="$tmp" # Vulkan's loader warns on every adapter request without one

  unxz_to "$pack_dir/deno.xz" "$tmp/deno"
  chmod +x "$tmp/deno"
  export PATH="$tmp:$PATH" # the bench starts its workers with this Deno (Deno.execPath)

  # (grep without -q: under pipefail, -q's early exit would fail ldconfig with SIGPIPE)
  if ! ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; then
    echo "no Vulkan loader here: using the carried libvulkan1" >&2
    for f in "$pack_dir"/vulkan/*.deb; do dpkg -x "$f" "$tmp/vulkan"; done
    export LD_LIBRARY_PATH="$tmp/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  # NVIDIA's container runtime may put its driver's manifest outside the loader's search path
  local nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [[ -z "${VK_DRIVER_FILES:-}" && -f "$nvidia_icd" ]] &&
    ! grep -qls nvidia /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null; then
    export VK_DRIVER_FILES="$nvidia_icd"
  fi

  echo "Deno $("$tmp/deno" --version | head -n 1 | cut -d' ' -f2) from $pack_dir/deno.xz" >&2
  "$tmp/deno" eval --quiet '
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) {
      console.error("bench/gpu.sh: WebGPU offers no adapter here (no Vulkan driver found)");
      Deno.exit(1);
    }
    const { vendor, architecture, description } = adapter.info;
    console.error(`WebGPU adapter: ${description} (vendor ${vendor}, ${architecture || "?"})`);'
  [[ "${1:-}" == "tests" || "${1:-}" == "host" ]] ||
    "$python" -c 'import torch
cuda = torch.cuda.is_available()
print(f"PyTorch {torch.__version__}:", torch.cuda.get_device_name(0) if cuda else "no CUDA GPU")' >&2
  local perms=(--allow-read --allow-write --allow-run --allow-env --allow-sys --allow-ffi)
  local flags=(--torch-device "$device" --python "$python")
  if [[ "${1:-}" == "tests" ]]; then
    shift
    [[ -f "$pack_dir/webgpu-tests.js" ]] || { echo "bench/gpu.sh: $pack_dir/webgpu-tests.js is missing; run 'bench/gpu.sh pack'" >&2; exit 2; }
    GIFTWRAP_REQUIRE_WEBGPU=1 "$tmp/deno" test "${perms[@]}" "$@" "$pack_dir/webgpu-tests.js"
  elif [[ "${1:-}" == "host" ]]; then
    shift
    [[ -f "$pack_dir/webgpu-host.js" ]] || { echo "bench/gpu.sh: $pack_dir/webgpu-host.js is missing; run 'bench/gpu.sh pack'" >&2; exit 2; }
    "$tmp/deno" run "${perms[@]}" "$pack_dir/webgpu-host.js" "$@"
  elif [[ "${1:-}" == "profile" ]]; then
    shift
    "$tmp/deno" run "${perms[@]}" "$bundle" --profile "${flags[@]}" --backend webgpu "$@"
  else
    flags+=(--backends webgpu --configs front-door,large --pause-ms 100)
    "$tmp/deno" run "${perms[@]}" "$bundle" "${flags[@]}" "$@"
  fi
}

if [[ "${1:-}" == "pack" ]]; then pack; else run "$@"; fi
