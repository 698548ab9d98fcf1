"""The ``main()`` of every kil node: init, spin, clean shutdown (the one rclpy-using helper here).

Ctrl-C and SIGTERM end the node quietly; an error while the context is still valid propagates.
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
