"""The paper's Table I (real robot, 10 rollouts per cell): successes per task, method and setting,
so that a report can put the paper's cell beside each of ours.

Task names are the simulator's (the paper's "pour cup" is ``pour_bottle``); methods are the
pipeline's names. Source: ``shared/reference`` Table I, rows RGB [9], S2 [30], KIL (IM/IN/T).
"""

from __future__ import annotations

from kil_sim.tasks import TABLE_SETTINGS as SETTINGS

_TASKS = ("place_shoe", "place_mug", "pour_bottle", "pick_pen", "place_mouse")
_ROWS = {
    "RGB": (8, 6, 3, 10, 7, 0, 4, 0, 1, 7, 7, 0, 8, 8, 1),
    "S2": (9, 9, 5, 8, 9, 10, 6, 3, 5, 7, 7, 5, 10, 9, 8),
    "KIL-IM": (10, 6, 9, 10, 8, 8, 7, 4, 5, 7, 8, 4, 10, 8, 9),
    "KIL-IN": (10, 6, 5, 10, 7, 10, 1, 4, 2, 8, 9, 6, 9, 9, 9),
    "KIL-T": (9, 6, 6, 9, 9, 9, 8, 8, 8, 6, 8, 7, 6, 6, 7),
}
EPISODES = 10
#: (method, task, setting) -> successes out of ``EPISODES``.
TABLE_I: dict[tuple[str, str, str], int] = {
    (method, task, setting): row[3 * t + s]
    for method, row in _ROWS.items()
    for t, task in enumerate(_TASKS)
    for s, setting in enumerate(SETTINGS)
}


def paper_successes(method: str, task: str, setting: str) -> int | None:
    """The paper's successes out of 10 for a cell of Table I, or None where it has none."""
    return TABLE_I.get((method, task, setting))


def paper_average(method: str, setting: str) -> float | None:
    """The paper's success rate of a method in a setting over the five tasks (Table I's Task Avg.)."""
    cells = [TABLE_I[(method, task, setting)] for task in _TASKS if (method, task, setting) in TABLE_I]
    return sum(cells) / (EPISODES * len(cells)) if cells else None
