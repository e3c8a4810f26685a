#!/usr/bin/env bash
# Downloads (does not install) the Debian packages aviary builds and runs
# against into .gpudeps/, for a GPU machine whose image has CUDA and PyTorch
# but not aviary's build dependencies and cannot reach a package mirror.
# tests/gpu/check.sh unpacks a carried .gpudeps/ under /tmp/gpudeps (never
# over /) and points the compiler, the linker and aviary's commands at it.
# Run here, in the repository root, on a Debian/Ubuntu machine no newer than
# the GPU machine's (older glibc runs on newer, not the reverse):
#   bash tests/gpu/fetch_deps.sh        # then carry .gpudeps with the run
set -eu
cd "$(dirname "$0")/../.."
grep -qx '/.gpudeps/' .git/info/exclude 2>/dev/null || echo '/.gpudeps/' >>.git/info/exclude
mkdir -p .gpudeps
cd .gpudeps
# headers and link-time names; the shared libraries they need; the build tools.
# zlib, expat and the C/C++ runtimes are left out on purpose: every image has
# them, and older copies would shadow the system's for the toolchain.
PKGS="liblua5.4-dev liblua5.4-0 lua-cjson
  libopenblas-dev libopenblas-pthread-dev libopenblas0-pthread libgfortran5
  libturbojpeg0-dev libturbojpeg0 libjpeg62-turbo libpng-dev libpng16-16
  libcjson-dev libcjson1 libprotobuf-c-dev libprotobuf-c1 protobuf-c-compiler libprotoc32 libprotobuf32
  libonnx-dev libcairo2-dev libcairo2 libpixman-1-0 libfontconfig1 libfreetype6 libxcb1 libxcb-render0
  libxcb-shm0 libx11-6 libxext6 libxrender1 libxau6 libxdmcp6 libbsd0 libmd0 libbrotli1
  libreadline-dev libreadline8 libncurses-dev libtinfo6 fonts-dejavu-core"
apt-get download $PKGS
du -sh .
