"""What every kil node shares (the rclpy-using helpers here): ``spin_node`` as its ``main()``
(init, spin, clean shutdown; Ctrl-C and SIGTERM end quietly, real errors propagate; ``--help``
prints the node's documentation and declared parameters), ``declare`` for parameters with
descriptions, ``WarnOnce`` for warnings logged once per kind, and
``ThrottledWarning`` for warnings logged at most once per period per kind — never one per frame.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable

HELP_FLAGS = ("-h", "--help")


def spin_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """Create the node with ``factory`` after ``rclpy.init`` and spin it until shutdown.

    With ``-h``/``--help`` before ``--ros-args``, print the node module's docstring and the
    parameters the node declares (name, type, default, description) instead, and return 0.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    args = list(args if args is not None else sys.argv)
    own_args = args[: args.index("--ros-args")] if "--ros-args" in args else args
    if any(a in HELP_FLAGS for a in own_args):
        return _print_help(factory)
    rclpy.init(args=args)
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
        _destroy(node)
        rclpy.try_shutdown()
    return 0


def _destroy(node) -> None:
    """The node's own ``close()`` (if any), then ``destroy_node()``; nothing for None."""
    if node is not None:
        close = getattr(node, "close", None)
        if close is not None:
            close()
        node.destroy_node()


def _print_help(factory: Callable[[], object]) -> int:
    """Print the node's documentation and every parameter it declares while it is constructed
    (construction may stop early for want of a required parameter; those declared so far are
    listed). Nothing is spun, so the node never acts."""
    import rclpy

    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    spec = getattr(module, "__spec__", None)  # ``python -m pkg.mod`` runs as __main__
    name = spec.name if spec is not None else getattr(module, "__name__", str(factory))
    print(f"usage: python -m {name} [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]\n")
    if module is not None and module.__doc__:
        print(module.__doc__.strip() + "\n")
    _DECLARED.clear()
    rclpy.init(args=["--ros-args", "--log-level", "fatal"])
    node = None
    try:
        node = factory()
    except Exception as error:  # a required parameter is missing: the ones before it are known
        note = f"(construction stopped: {error})"
    else:
        note = ""
    finally:
        _destroy(node)
        rclpy.try_shutdown()
    print("parameters:")
    for pname, default, description in _DECLARED:
        print(f"  {pname} ({type(default).__name__}, default {default!r}): {description}")
    if note:
        print(f"  ... {note}")
    return 0


#: (name, default, description) of every parameter declared through ``declare``, for ``--help``.
_DECLARED: list[tuple[str, object, str]] = []


def declare(node, name: str, default, description: str):
    """Declare a parameter with a description and return its value."""
    from rcl_interfaces.msg import ParameterDescriptor

    _DECLARED.append((name, default, description))
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
    """Logs a warning per kind at most once every ``period_s`` seconds, prefixed by ``prefix``.
    The kind is ``key`` plus the text with its numbers blanked, so different problems of one input
    are each reported, while one problem repeated with changing values is throttled."""

    def __init__(self, logger, period_s: float, prefix: str = "") -> None:
        self.logger, self.period_s, self.prefix = logger, period_s, prefix
        self.last: dict[str, float] = {}

    def __call__(self, key: str, text: str) -> None:
        kind = key + "|" + _NUMBERS.sub("#", text)
        now = time.monotonic()
        if now - self.last.get(kind, -1e9) >= self.period_s:
            self.last[kind] = now
            self.logger.warning(self.prefix + text)


_NUMBERS = re.compile(r"[-+]?\d[\d.e+-]*")


def qos_event_callbacks(node, topic: str, qos, side: str):
    """Event callbacks that log one clear warning when a peer's QoS is incompatible with ours on
    ``topic`` (e.g. a best-effort camera driver and a reliable subscriber: nothing would flow,
    silently): the topic, the policy, this side's value and the peers'.

    Args:
        side: "subscription" or "publisher" (which endpoint the callbacks are for).
    """
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
    from rclpy.qos import qos_policy_name_from_kind

    if side not in ("subscription", "publisher"):
        raise ValueError(f"side must be subscription or publisher, got {side!r}")
    warned: set[str] = set()
    name = node.resolve_topic_name(topic)

    def callback(event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        if policy in warned:
            return
        warned.add(policy)
        if side == "subscription":
            peers, peer_side = node.get_publishers_info_by_topic(name), "publisher"
        else:
            peers, peer_side = node.get_subscriptions_info_by_topic(name), "subscription"
        theirs = sorted({_policy_value(p.qos_profile, policy) for p in peers}) or ["(unknown)"]
        node.get_logger().warning(
            f"incompatible QoS on {name}: {policy} is {_policy_value(qos, policy)} on this {side} but "
            f"{', '.join(theirs)} on the {peer_side}; no messages flow between them "
            "(set the image_reliability parameters to match)"
        )

    if side == "subscription":
        return SubscriptionEventCallbacks(incompatible_qos=callback)
    return PublisherEventCallbacks(incompatible_qos=callback)


def _policy_value(profile, policy: str) -> str:
    """A QoS profile's value of a policy, in words ("best_effort", "transient_local", ...)."""
    value = getattr(profile, policy.lower(), None)
    return getattr(value, "name", str(value)).lower()
