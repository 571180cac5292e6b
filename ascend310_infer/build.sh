#!/usr/bin/env bash
# Build the inference app (ascend310_infer/out/main; INFER_BUILD_DIR=DIR builds elsewhere).
#
#   bash ascend310_infer/build.sh
#
# The cpu backend (OpenCV DNN) is always built and needs cmake, a C++17
# compiler and OpenCV: apt-get install -y cmake g++ libopencv-dev.
# The ascend310 backend is added when MindSpore's C++ inference API is found:
# MINDSPORE_PATH=<site-packages>/mindspore, else the location `pip show` gives
# for the mindspore-ascend or mindspore package (PYTHON picks the interpreter).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
build_dir=${INFER_BUILD_DIR:-$here/out}
install_hint="install the build tools: apt-get install -y cmake g++ libopencv-dev"

die() {
    printf 'build.sh: error: %s\n' "$1" >&2
    exit 1
}

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
fi

command -v cmake > /dev/null || die "cmake not found; $install_hint"
cxx=${CXX:-}
if [[ -z $cxx ]]; then
    for candidate in g++ c++ clang++; do
        if command -v "$candidate" > /dev/null; then
            cxx=$candidate
            break
        fi
    done
fi
if [[ -z $cxx ]] || ! command -v "$cxx" > /dev/null; then
    die "no C++ compiler found (CXX='${CXX:-}'); $install_hint"
fi

# OpenCV is checked here too so that its absence gets this one line, not a CMake trace.
if [[ -z ${OpenCV_DIR:-} ]] && ! pkg-config --exists opencv4 2> /dev/null \
    && ! compgen -G "/usr/lib/*/cmake/opencv4/OpenCVConfig.cmake" > /dev/null \
    && ! compgen -G "/usr/local/lib/cmake/opencv4/OpenCVConfig.cmake" > /dev/null \
    && ! compgen -G "/usr/lib/cmake/opencv4/OpenCVConfig.cmake" > /dev/null; then
    die "OpenCV development files not found (the app decodes and resizes images with OpenCV, and its cpu backend is OpenCV DNN); $install_hint, or set OpenCV_DIR"
fi

ms_path=${MINDSPORE_PATH:-}
if [[ -z $ms_path ]]; then
    python=${PYTHON:-}
    [[ -n $python ]] || { [[ -x $here/../.venv/bin/python ]] && python=$here/../.venv/bin/python; } || python=python3
    for package in mindspore-ascend mindspore; do
        location=$("$python" -m pip show "$package" 2> /dev/null | sed -n 's/^Location: //p' || true)
        if [[ -n $location && -d $location/mindspore ]]; then
            ms_path=$location/mindspore
            break
        fi
    done
fi

# A build folder configured from another source tree cannot be reused.
if [[ -f $build_dir/CMakeCache.txt ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$here" "$build_dir/CMakeCache.txt"; then
    rm -rf "$build_dir"
fi
mkdir -p "$build_dir"
echo "configuring in $build_dir (MINDSPORE_PATH=${ms_path:-<none>})"
cmake -S "$here" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DMINDSPORE_PATH="$ms_path" || die "cmake configuration failed (see the messages above)"
cmake --build "$build_dir" -j "$(nproc 2> /dev/null || echo 2)" || die "compilation failed (see the messages above)"

echo "built $build_dir/main"
"$build_dir/main" --version
