"""Point the ROS 2 PyPI wheels' exported CMake targets at this interpreter's include dirs.

The message wheels' ``*.cmake`` exports name the wheel build machine's Python and numpy include
paths (``/opt/python/cp311-cp311/...``); CMake then stops with "Imported target ... includes
non-existent path". This rewrites them under ``<prefix>/share`` to this interpreter's paths.
Idempotent; prints how many files it changed.

uv installs a wheel's files as hard links to its cache, so a file is replaced (a new file renamed
over it), never written in place: writing in place rewrote the cached copy, and every venv made
from that cache afterwards named the first venv's numpy (gone with it). Paths another venv's run
left are rewritten too.

Usage: python tools/fix_ros_wheel_cmake_paths.py [PREFIX]   (default: sys.prefix, the venv)
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

import numpy

# An include path as the exports write it (between ";" and quotes): numpy's headers under any
# interpreter's site-packages (the wheel build machine's, or another venv's), and the interpreter's
# own include dir. numpy's first, so that it is not half-rewritten by the other rule.
_NUMPY_INCLUDE = re.compile(r'[^;"\s]*/lib/python3\.11/site-packages/numpy/_core/include')
_PYTHON_INCLUDE = re.compile(r'[^;"\s]*/include/python3\.11(?=[;"\s])')


def fix_cmake_paths(prefix: Path) -> int:
    """Rewrite the include paths in every ``prefix/share/**/cmake/*.cmake`` to this interpreter's;
    return how many files changed."""
    numpy_include, python_include = numpy.get_include(), sysconfig.get_paths()["include"]
    changed = 0
    for path in (prefix / "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        fixed = _NUMPY_INCLUDE.sub(lambda _: numpy_include, text)
        fixed = _PYTHON_INCLUDE.sub(lambda _: python_include, fixed)
        if fixed != text:
            replacement = path.with_name(path.name + ".kil-tmp")
            replacement.write_text(fixed)
            os.replace(replacement, path)  # a new file: a hard link's other names keep the old text
            changed += 1
    return changed


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.prefix)
    print(f"fixed ROS wheel CMake paths in {fix_cmake_paths(root)} files under {root}/share")
