"""Pairing colour and depth frames by time stamp (an in-project approximate synchroniser; no
message_filters here). Only the newest pair matters: older frames are dropped, never queued."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class Pair(Generic[T, U]):
    stamp_ns: int
    color: T
    depth: U


class LatestPairSynchronizer(Generic[T, U]):
    """Keeps the last few colour and depth messages; :meth:`pop_newest` returns the newest colour
    frame with a depth frame within ``slop_ns`` of it that is newer than the last pair returned.

    Args:
        slop_ns: largest stamp difference of a pair (ns).
        history: messages kept per stream.
    """

    def __init__(self, slop_ns: int, history: int = 5) -> None:
        if slop_ns < 0:
            raise ValueError(f"slop must be >= 0, got {slop_ns}")
        self.slop_ns = slop_ns
        self._color: deque[tuple[int, T]] = deque(maxlen=history)
        self._depth: deque[tuple[int, U]] = deque(maxlen=history)
        self._last_ns: int | None = None

    def add_color(self, stamp_ns: int, message: T) -> None:
        self._color.append((stamp_ns, message))

    def add_depth(self, stamp_ns: int, message: U) -> None:
        self._depth.append((stamp_ns, message))

    @property
    def newest_color_ns(self) -> int | None:
        """The stamp of the newest colour frame received (None: none yet)."""
        return max((stamp for stamp, _ in self._color), default=None)

    def skip_through(self, stamp_ns: int) -> None:
        """From now on return only pairs stamped after ``stamp_ns`` (frames of a scene that has
        since been reset, e.g. still in flight)."""
        self._last_ns = stamp_ns if self._last_ns is None else max(self._last_ns, stamp_ns)

    def pop_newest(self) -> Pair[T, U] | None:
        for stamp, color in sorted(self._color, key=lambda item: -item[0]):
            if self._last_ns is not None and stamp <= self._last_ns:
                return None
            best = min(self._depth, key=lambda item: abs(item[0] - stamp), default=None)
            if best is not None and abs(best[0] - stamp) <= self.slop_ns:
                self._last_ns = stamp
                return Pair(stamp, color, best[1])
        return None


#: Stamps and a node's clock closer than this are taken to be on the same clock.
SAME_CLOCK_NS = 1_000_000_000


def reset_stamp(newest_ns: int | None, now_ns: int) -> int | None:
    """The stamp through which frames belong to the scene before a reset at ``now_ns``: the newest
    frame received, or the node's clock where the camera stamps on it (within
    :data:`SAME_CLOCK_NS`; the simulator's frames are), so that frames rendered before the reset
    but still in flight are not used either. A camera stamping on another clock (a device's own
    time) only gets the frames received so far skipped, never all of them. None: nothing to skip."""
    if newest_ns is None:
        return None
    return max(newest_ns, now_ns) if abs(now_ns - newest_ns) <= SAME_CLOCK_NS else newest_ns
