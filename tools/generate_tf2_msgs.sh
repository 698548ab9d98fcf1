#!/usr/bin/env bash
# Generate ROS 2's tf2_msgs interface package into the environment where none is installed (the
# PyPI ROS 2 wheels lack it; a real ROS install has its own and is left alone). The definitions
# live in tools/interfaces/tf2_msgs (ignored by colcon, so the workspace never shadows a real
# tf2_msgs); they are built with rosidl and installed into the prefix, beside the wheels' own
# message packages: $PREFIX/share/tf2_msgs, $PREFIX/lib, and the Python package in site-packages.
#
# Usage: tools/generate_tf2_msgs.sh PREFIX     (PREFIX: the venv holding the ROS 2 wheels)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${1:?usage: generate_tf2_msgs.sh PREFIX}
python="$prefix/bin/python"

if "$python" -c "import tf2_msgs.msg" 2>/dev/null; then
    exit 0  # installed already (a real ROS install, or generated before)
fi
echo "[setup] generating tf2_msgs (TFMessage, TF2Error, FrameGraph) into $prefix"
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cmake -S "$root/tools/interfaces/tf2_msgs" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_PREFIX_PATH="$prefix" -DPython3_EXECUTABLE="$python" -DBUILD_TESTING=OFF \
    -DPYTHON_INSTALL_DIR="${site#"$prefix"/}" -Wno-dev >"$build/configure.log" 2>&1 \
    || { cat "$build/configure.log" >&2; echo "[setup] error: configuring tf2_msgs failed" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 \
    || { tail -50 "$build/build.log" >&2; echo "[setup] error: building tf2_msgs failed" >&2; exit 1; }
cmake --install "$build" >/dev/null
"$python" -c "from tf2_msgs.msg import TFMessage; TFMessage()" \
    || { echo "[setup] error: tf2_msgs was built but does not import" >&2; exit 1; }
