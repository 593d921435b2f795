"""Telemetry as the controller folds it: typed on the way in (`nalar_common.wire.Telemetry`),
maps for the policies, and an unreadable message set aside with the field that is wrong."""

from __future__ import annotations

from typing import Any

from nalar_common.envelope import Envelope
from nalar_common.subjects import Names
from nalar_common.wire import InstanceLoad, Telemetry
from nalar_global_controller.service import GlobalController


def _bare_gc() -> GlobalController:
    gc = GlobalController.__new__(GlobalController)
    gc.names = Names("t")
    gc.telemetry, gc._raw = {}, {}
    return gc


LOAD = InstanceLoad(agent="Echo", host="n1-h1", queue=4, inflight=1, concurrency=2,
                    engine={"engine": "simulated"}, queued_work_s=0.25,
                    recent_sessions=[["s1", 10.0]])


def test_telemetry_is_folded_as_maps_the_policies_read() -> None:
    gc = _bare_gc()
    sent = Telemetry(node="n1", ts=100.0, instances={"n1-h1.Echo": LOAD}, held=4,
                     stats={"admitted": 4})
    gc._raw["n1"] = sent.encode()
    assert gc._fold_telemetry() == []
    folded: dict[str, Any] = gc.telemetry["n1"]
    assert folded == sent.as_dict()
    row = folded["instances"]["n1-h1.Echo"]
    assert (row["queue"], row["queued_work_s"], row["recent_sessions"]) == (4, 0.25,
                                                                            [["s1", 10.0]])
    assert gc._raw == {}  # each message is decoded once


def test_unreadable_telemetry_is_set_aside_with_the_field_that_is_wrong() -> None:
    gc = _bare_gc()
    bad_row = {**LOAD.as_dict(), "queue": "four"}
    gc._raw["n2"] = Envelope("telemetry", {"node": "n2", "ts": 1.0,
                                           "instances": {"n2-h1.Echo": bad_row}}).encode()
    gc._raw["n3"] = b"junk"
    gc._raw["n1"] = Telemetry(node="n1", ts=1.0).encode()
    bad = {subject: why for subject, _, why in gc._fold_telemetry()}
    assert bad[gc.names.telemetry("n2")] == (
        "telemetry message: field 'instances.n2-h1.Echo.queue' must be int, got str")
    assert bad[gc.names.telemetry("n3")].startswith("telemetry message is not msgpack")
    assert set(gc.telemetry) == {"n1"}
