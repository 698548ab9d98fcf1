"""Worker processes that end with the process that started them."""

from __future__ import annotations

import os
import sys
import threading
import time


def exit_when_orphaned(parent: int, interval_s: float = 1.0) -> threading.Thread:
    """Ends this process (exit status 1, a line on stderr) once its parent ``parent`` is gone: a
    daemon thread compares ``os.getppid()`` with it every ``interval_s``. A worker (a method's
    training, an episode's recording) would otherwise go on for hours after a study or demo killed
    with SIGTERM or SIGKILL (only Ctrl-C reaches the whole process group). Returns the thread."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        print(f"[worker] parent process {parent} is gone: stopping this worker ({os.getpid()})", file=sys.stderr,
              flush=True)  # fmt: skip
        os._exit(1)

    thread = threading.Thread(target=watch, name="exit-when-orphaned", daemon=True)
    thread.start()
    return thread
