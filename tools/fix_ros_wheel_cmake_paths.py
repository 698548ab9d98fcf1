"""Point the ROS 2 PyPI wheels' exported CMake targets at this interpreter's include dirs.

The message wheels' ``*.cmake`` exports name the wheel build machine's Python and numpy include
paths (``/opt/python/cp311-cp311/...``); CMake then stops with "Imported target ... includes
non-existent path". This rewrites them under ``<prefix>/share`` to this interpreter's paths.
Idempotent; prints how many files it changed.

Usage: python tools/fix_ros_wheel_cmake_paths.py [PREFIX]   (default: sys.prefix, the venv)
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

_BUILD_PYTHON = "/opt/python/cp311-cp311"
# Longest first, so the numpy path is not half-rewritten by the include-dir rule.
_REWRITES = (
    (f"{_BUILD_PYTHON}/lib/python3.11/site-packages/numpy/_core/include", numpy.get_include()),
    (f"{_BUILD_PYTHON}/include/python3.11", sysconfig.get_paths()["include"]),
)


def fix_cmake_paths(prefix: Path) -> int:
    """Rewrite the wheel build paths in every ``prefix/share/**/cmake/*.cmake``; return the count."""
    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        fixed = text
        for old, new in _REWRITES:
            fixed = fixed.replace(old, new)
        if fixed != text:
            path.write_text(fixed)
            changed += 1
    return changed


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.prefix)
    print(f"fixed ROS wheel CMake paths in {fix_cmake_paths(root)} files under {root}/share")
