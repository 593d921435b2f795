"""Protect one high-priority session (the Nalar paper's Fig. 6) as a Nalar policy: raise its
priority everywhere, and when it waits in a queue while another instance of the same agent
is idle, route it there (its queued calls move at once)."""

import os

from nalar_global_controller.policies import ClusterState, Decisions


class ProtectSession:
    def __init__(self) -> None:
        self.session = os.environ.get("NALAR_PROTECT_SESSION", "vip")

    def decide(self, state: ClusterState, out: Decisions) -> None:
        out.set_priority(self.session, 10)
        for iid, inst in state.instances.items():
            if self.session in inst.get("queued_sessions", []):
                idle = [j for j, o in sorted(state.instances.items()) if j != iid
                        and o["agent"] == inst["agent"] and not o.get("queue")
                        and not o.get("inflight")]
                if idle:
                    out.route_session(self.session, inst["agent"], idle[0])
