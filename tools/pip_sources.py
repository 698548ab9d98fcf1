"""Print pip's configured package sources as uv options, one per line.

uv reads no pip configuration, but a machine's pip may be set up to find wheels on local disk
(``find-links``, ``extra-index-url`` in pip.conf or ``PIP_*`` variables): without them uv would
download what pip finds locally (a CUDA build of torch is several GB). ``index-url`` is passed as
``--index-url``, the others as they are named. Run with the venv's Python (its pip is asked).
"""

from __future__ import annotations

import subprocess
import sys

OPTIONS = ("index-url", "extra-index-url", "find-links")


def uv_options(pip_config: str) -> list[str]:
    """uv options for the sources in ``pip config list`` output (``scope.name='value'`` lines;
    a value may list several sources separated by whitespace), each source once."""
    options: list[str] = []
    for line in pip_config.splitlines():
        key, sep, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if not sep or name not in OPTIONS:
            continue
        for source in value.strip().strip("'\"").split():
            pair = [f"--{name}", source]
            if not any(options[i : i + 2] == pair for i in range(0, len(options), 2)):
                options += pair
    return options


def main() -> int:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    print("\n".join(uv_options(listing)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
