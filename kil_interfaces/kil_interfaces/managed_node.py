"""The lifecycle pattern keypoint_node and policy_node share (rclpy managed nodes).

configure runs the node's ``_configure()``; any exception is logged as ``configure failed: ...``,
kept in ``config_error`` for /diagnostics, the node's resources are released and the transition
fails into the error state, whose handler releases again and returns to *unconfigured* (fix the
parameter, configure again). What a configured node creates goes through :meth:`track` (timers,
subscriptions) and :meth:`lifecycle_publisher`, so that cleanup and errors destroy all of it.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn


class ManagedNode(LifecycleNode):
    """Subclasses implement ``_configure()`` and may extend ``_release()`` (call super)."""

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.config_error = ""
        self._entities: list = []  # timers and subscriptions of the configured node
        self._lifecycle_pubs: list = []

    def bring_up(self, autostart: bool) -> None:
        """With ``autostart``: configure and activate now; a failing configure raises ValueError
        with the reason (the process ends with it)."""
        if not autostart:
            return
        self.trigger_configure()
        if self.config_error:
            raise ValueError(self.config_error)
        self.trigger_activate()

    def track(self, entity):
        """Keep a timer or subscription of the configured node (destroyed by ``_release``)."""
        self._entities.append(entity)
        return entity

    def lifecycle_publisher(self, *args, **kwargs):
        """``create_lifecycle_publisher`` whose publisher ``_release`` destroys."""
        publisher = self.create_lifecycle_publisher(*args, **kwargs)
        self._lifecycle_pubs.append(publisher)
        return publisher

    def _configure(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Destroy the tracked timers, subscriptions and lifecycle publishers."""
        for entity in self._entities:
            if hasattr(entity, "cancel"):
                self.destroy_timer(entity)
            else:
                self.destroy_subscription(entity)
        for publisher in self._lifecycle_pubs:
            self.destroy_lifecycle_publisher(publisher)
        self._entities, self._lifecycle_pubs = [], []

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as error:  # any load failure is reported, not raised into rclpy
            self.config_error = str(error) or type(error).__name__
            self.get_logger().error(f"configure failed: {self.config_error}")
            self._release()
            return TransitionCallbackReturn.ERROR
        self.config_error = ""
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured: fix the parameter, configure again
