"""Built-in session priority: a session's priority is inherited by every future of it."""

from __future__ import annotations

from nalar_global_controller.primitives import ClusterState, Decisions


class SessionPriority:
    """Give every call of a session the highest priority any of its calls was made with (a
    run started with `"priority": 5` lifts the session's calls queued anywhere), plus fixed
    priorities from config: `{"class": "...:SessionPriority", "params": {"sessions":
    {"vip": 10}}}`."""

    def __init__(self, sessions: dict[str, int] | None = None, inherit: bool = True) -> None:
        sessions = dict(sessions or {})
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in sessions.values()):
            raise ValueError("session priorities must be integers")
        self.sessions = sessions
        self.inherit = inherit

    def decide(self, state: ClusterState, out: Decisions) -> None:
        found: dict[str, int] = {}
        if self.inherit:
            for row in state.instances.values():
                for w in row.get("waiting", ()):
                    p = int(w.get("priority", 0))
                    if p > 0 and p > found.get(w["session"], 0):
                        found[w["session"]] = p
        found.update(self.sessions)
        for session, value in sorted(found.items()):
            out.set_priority(session, value)
