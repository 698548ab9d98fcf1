"""What every kil node shares (the rclpy-using helpers here): ``spin_node`` as its ``main()``
(init, spin, clean shutdown; Ctrl-C and SIGTERM end quietly, real errors propagate), ``declare``
for parameters with descriptions, and ``WarnOnce`` for warnings logged once per kind, not per frame.
"""

from __future__ import annotations

import sys
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
