"""Recover interrupted recordings: ``ros2 bag reindex`` for kil episode directories.

    python -m kil_teleop.recover demos/place_mug

A recorder killed mid-episode (SIGKILL, a crash, power loss) leaves the episode under
``DIR/.partial/``: a bag whose ``metadata.yaml`` lists every file closed before the cut (readable as
it is) and the file being written. This turns each into a complete bag under ``DIR/interrupted/``:
the closed files, plus every message of the cut file up to its last complete chunk. Nothing is
deleted except temporary files whose messages were copied. Training reads ``DIR`` itself; move a
recovered episode back there to train on it. ``recorder_node`` and ``record_demos`` do this at
start-up for what a previous run left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kil_interfaces.typestore import kil_typestore
from kil_teleop.recording import partial_episodes, recover_partial_episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_teleop.recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="episode directory (the recorder's output_dir)")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.exit(2, f"error: {args.directory}: no such directory\n")
    pending = partial_episodes(args.directory)
    if not pending:
        print(f"{args.directory}: no interrupted recording to recover")
        return 0
    recovered = recover_partial_episodes(args.directory, kil_typestore())
    for path, salvaged in recovered:
        print(f"recovered {path} ({salvaged} messages salvaged from the file being written)")
    left = partial_episodes(args.directory)
    for path in left:
        print(f"{path}: nothing readable was found; left in place", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
