#!/usr/bin/env bash
# Generate ROS 2 interface packages that the PyPI ROS 2 wheels lack (tf2_msgs, foxglove_msgs, xarm_msgs,
# ur_dashboard_msgs) into the environment, each only where it is not installed (a real ROS install has
# its own and is left alone). The definitions live in tools/interfaces/<package> (ignored by colcon,
# so the workspace never shadows a real package); each is built with rosidl and installed into the
# prefix, beside the wheels' own message packages: $PREFIX/share/<package>, $PREFIX/lib, and the
# Python package in site-packages.
#
# Usage: tools/generate_interfaces.sh PREFIX PACKAGE...   (PREFIX: the venv holding the ROS 2 wheels)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${1:?usage: generate_interfaces.sh PREFIX PACKAGE...}
shift
python="$prefix/bin/python"
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

for package in "$@"; do
    source_dir="$root/tools/interfaces/$package"
    [ -d "$source_dir" ] || { echo "[setup] error: no definitions in $source_dir" >&2; exit 1; }
    if "$python" -c "import $package.msg" 2>/dev/null; then
        continue  # installed already (a real ROS install, or generated before)
    fi
    echo "[setup] generating $package into $prefix"
    build=$(mktemp -d)
    cmake -S "$source_dir" -B "$build" -DCMAKE_INSTALL_PREFIX="$prefix" \
        -DCMAKE_PREFIX_PATH="$prefix" -DPython3_EXECUTABLE="$python" -DBUILD_TESTING=OFF \
        -DPYTHON_INSTALL_DIR="${site#"$prefix"/}" -Wno-dev >"$build/configure.log" 2>&1 \
        || { cat "$build/configure.log" >&2; echo "[setup] error: configuring $package failed" >&2; exit 1; }
    cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 \
        || { tail -50 "$build/build.log" >&2; echo "[setup] error: building $package failed" >&2; exit 1; }
    cmake --install "$build" >/dev/null
    rm -rf "$build"
    "$python" -c "import $package.msg" \
        || { echo "[setup] error: $package was built but does not import" >&2; exit 1; }
done
