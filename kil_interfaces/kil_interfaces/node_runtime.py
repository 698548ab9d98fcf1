"""What every kil node shares (the rclpy-using helpers here): ``spin_node`` as its ``main()``
(init, spin, clean shutdown; Ctrl-C and SIGTERM end quietly, real errors propagate; ``--help``
prints the node's documentation and declared parameters), ``declare`` for parameters with
descriptions, ``WarnOnce`` for warnings logged once per kind, and
``ThrottledWarning`` for warnings logged at most once per period per kind — never one per frame.
"""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable

HELP_FLAGS = ("-h", "--help")


#: How long a node may take to stop after SIGINT/SIGTERM (its ``close()`` included) before
#: the process dumps every thread's stack to stderr and exits with code 1.
SHUTDOWN_TIMEOUT_S = 30.0


def spin_node(
    factory: Callable[[], object], args: list[str] | None = None, shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S
) -> int:
    """Create the node with ``factory`` after ``rclpy.init`` and spin it until shutdown.

    SIGINT and SIGTERM are taken by this process's main thread, not by rclpy's C signal
    handler: the node is built, spun and torn down (``close()``, then ``destroy_node()``) in one
    worker thread; the main thread waits for it and, on a signal, shuts the context down from
    Python, which ends the spin. A stop that takes longer than ``shutdown_timeout_s``
    (a wedged callback, a teardown that hangs) dumps every thread's stack to stderr and exits
    with code 1, so that a launch file or a test never waits on a process that will not end.
    A second signal during the stop ends the process at once (code 1). An exception raised in
    the node is re-raised here (the process fails with its traceback).

    With ``-h``/``--help`` before ``--ros-args``, print the node module's docstring and the
    parameters the node declares (name, type, default, description) instead, and return 0.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    args = list(args if args is not None else sys.argv)
    own_args = args[: args.index("--ros-args")] if "--ros-args" in args else args
    if any(a in HELP_FLAGS for a in own_args):
        return _print_help(factory)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        if stopping.is_set():  # a second signal: stop waiting for a clean stop
            print(f"{signal.Signals(signum).name} again while stopping: exiting now", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(all_threads=True)
            os._exit(1)
        stopping.set()
        faulthandler.dump_traceback_later(shutdown_timeout_s, exit=True)
        rclpy.try_shutdown()  # (the spinning executor wakes and returns)

    failure: list[BaseException] = []

    def run() -> None:  # construction, callbacks and teardown: all in this one thread
        node = None
        try:
            node = factory()
            rclpy.spin(node)
        except ExternalShutdownException:
            pass
        except BaseException as error:  # (handed to the main thread)
            if not stopping.is_set():  # a real error, not a construction or callback cut short by a stop
                failure.append(error)
        finally:
            if not stopping.is_set():  # ended without a signal: bound the teardown all the same
                faulthandler.dump_traceback_later(shutdown_timeout_s, exit=True)
            try:
                _destroy(node)
            except BaseException as error:
                failure.append(error)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = threading.Thread(target=run, name="node", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)  # (signals are handled between joins)
        rclpy.try_shutdown()
        if failure:
            raise failure[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not stopping.is_set():  # (after a signal the watchdog also bounds the interpreter's exit)
            faulthandler.cancel_dump_traceback_later()
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
