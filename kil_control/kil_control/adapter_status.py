"""The arm adapters' ``/diagnostics`` check (``lite6_node``, ``ur5e_node``): one place for the
levels, so both arms report alike.

ERROR: no fresh robot state (older than the adapter's state timeout) or a controller fault; WARN:
waiting for the first state, or a servo target refused within the last ``recent_s`` (the reason is
the message); OK otherwise. Values: targets sent and refused, the state's age, the last refusal.
"""

from __future__ import annotations

from kil_interfaces.diagnostics import ERROR, OK, WARN, Check


class AdapterStatus:
    """Counts servo targets sent and refused, and keeps the last refusal.

    Args:
        state_source: what the states come from (for messages), e.g. "/ufactory/robot_states".
        recent_s: a refusal younger than this makes the check WARN.
    """

    def __init__(self, state_source: str, recent_s: float = 2.0) -> None:
        self.state_source = state_source
        self.recent_ns = round(recent_s * 1e9)
        self.sent = self.refused = 0
        self.last_refusal = ""
        self.last_refusal_ns: int | None = None

    def on_sent(self) -> None:
        self.sent += 1

    def on_refused(self, reason: str, now_ns: int) -> None:
        self.refused += 1
        self.last_refusal, self.last_refusal_ns = reason, now_ns

    def check(self, now_ns: int, state_ns: int | None, timeout_s: float, fault: str = "", **values) -> Check:
        """The check now, given the newest state's receive time (None: none yet) and a controller
        ``fault`` ('' = none); ``values`` are added (e.g. the controller's mode)."""
        values = {"targets_sent": self.sent, "targets_refused": self.refused, **values}
        if self.last_refusal:
            values["last_refusal"] = self.last_refusal
        if state_ns is None:
            return Check(WARN, f"waiting for {self.state_source}", values)
        age = (now_ns - state_ns) / 1e9
        values["state_age_s"] = age
        if age > timeout_s:
            return Check(
                ERROR, f"{self.state_source} is {age:.2f} s old (state_timeout_s {timeout_s}): not servoing", values
            )
        if fault:
            return Check(ERROR, fault, values)
        if self.last_refusal_ns is not None and now_ns - self.last_refusal_ns < self.recent_ns:
            return Check(WARN, f"servo target refused: {self.last_refusal}", values)
        return Check(OK, "servoing" if self.sent else "ready; no servo target yet", values)
