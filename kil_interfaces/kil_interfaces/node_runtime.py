"""What every kil node shares (the rclpy-using helpers here): ``spin_node`` as its ``main()``
(init, spin, clean shutdown; Ctrl-C and SIGTERM end quietly, real errors propagate), ``declare``
for parameters with descriptions, ``WarnOnce`` for warnings logged once per kind, and
``ThrottledWarning`` for warnings logged at most once per period per kind — never one per frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def spin_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """Create the node with ``factory`` after ``rclpy.init`` and spin it until shutdown."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real error, not a callback cut short by the shutdown
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def declare(node, name: str, default, description: str):
    """Declare a parameter with a description and return its value."""
    from rcl_interfaces.msg import ParameterDescriptor

    return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value


class WarnOnce:
    """Logs a warning the first time each key occurs."""

    def __init__(self, logger) -> None:
        self.logger = logger
        self.seen: set[str] = set()

    def __call__(self, key: str, text: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            self.logger.warning(text + " (further occurrences are not logged)")


class ThrottledWarning:
    """Logs a warning per key at most once every ``period_s`` seconds, prefixed by ``prefix``."""

    def __init__(self, logger, period_s: float, prefix: str = "") -> None:
        self.logger, self.period_s, self.prefix = logger, period_s, prefix
        self.last: dict[str, float] = {}

    def __call__(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self.last.get(key, -1e9) >= self.period_s:
            self.last[key] = now
            self.logger.warning(self.prefix + text)
