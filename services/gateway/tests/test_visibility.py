"""What a caller may see: tracebacks and session ids are for admins only."""

from __future__ import annotations

from nalar_common.auth import Principal
from nalar_gateway.visibility import (
    cluster_for,
    config_for,
    scrub,
    scrub_all,
    sees,
    snapshot_for,
)

ADMIN = Principal("root", ("admin",), "ops")
USER = Principal("ann", ("runner",), "acme")
ERROR = {"code": "agent_error", "message": "ValueError: x",
         "details": {"type": "ValueError", "traceback": 'File "/srv/app/agents/a.py"',
                     "agent": "A"}}
SNAPSHOT = {"revision": 3, "routes": {"A": {"n1": 1.0}},
            "sessions": {"sess-secret": {"A": "i1"}}, "priorities": {"sess-secret": 5},
            "agent_priorities": {"sess-secret": {"A": 1}},
            "migrations": [{"id": "m", "session": "sess-secret"}],
            "affinity": {"sess-secret": {"A": "i1"}}}


def test_tracebacks_are_for_admins() -> None:
    view = {"run_id": "r", "status": "failed", "error": ERROR}
    assert "traceback" not in scrub(view, USER)["error"]["details"]
    assert scrub(view, USER)["error"]["details"]["agent"] == "A"
    assert scrub(view, ADMIN) is view
    assert "traceback" not in scrub_all([view], USER)[0]["error"]["details"]
    assert scrub({"event": "created"}, USER) == {"event": "created"}


def test_session_ids_are_for_admins() -> None:
    shown = snapshot_for(SNAPSHOT, USER)
    assert "sess-secret" not in repr(shown) and shown["routes"] == SNAPSHOT["routes"]
    assert shown["sessions"]["count"] == 1 and shown["affinity"] == 1
    assert snapshot_for(SNAPSHOT, ADMIN) is SNAPSHOT
    cluster = {"nodes": {}, "instances": [], "policy": SNAPSHOT}
    assert "sess-secret" not in repr(cluster_for(cluster, USER))
    assert cluster_for({"policy": None}, USER) == {"policy": None}


def test_tenants() -> None:
    assert sees(USER, "acme") and not sees(USER, "zeta") and not sees(USER, None)
    assert sees(ADMIN, "zeta") and sees(ADMIN, None)


def test_policy_params_are_for_admins() -> None:
    config = {"policies": ["m:A", {"class": "m:SessionPriority",
                                   "params": {"sessions": {"sess-secret": 5}}}]}
    shown = config_for(config, USER)
    assert "sess-secret" not in repr(shown) and shown["policies"][0] == "m:A"
    assert shown["policies"][1]["class"] == "m:SessionPriority"
    assert config_for(config, ADMIN) is config and config_for(None, USER) is None
