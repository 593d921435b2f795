"""The cluster view's live instances: cached between changes of the instance table, never
past the moment the first of them goes stale, and right after any change."""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

from nalar_common.cluster import ClusterView, InstanceInfo
from nalar_common.settings import NatsSettings
from nalar_common.subjects import Names


def view() -> ClusterView:
    bus = SimpleNamespace(settings=NatsSettings(), names=Names(),
                          on_reconnect=lambda hook: None)
    return ClusterView(bus, instance_ttl_s=5.0)  # type: ignore[arg-type]


def info(iid: str, node: str = "n1", **kw: object) -> InstanceInfo:
    return InstanceInfo(instance=iid, host=iid, node=node, agent="A", concurrency=1,
                        ts=time.time(), **kw)  # type: ignore[arg-type]


def test_live_instances_follow_every_change_of_the_table() -> None:
    v = view()
    assert v.live_instances("A") == []
    v.instances["a"] = info("a")
    first = v.live_instances("A")
    assert [i.instance for i in first] == ["a"]
    assert v.live_instances("A") is first  # unchanged table: the cached answer
    v.instances["a"] = replace(info("a"), draining=True)
    assert v.live_instances("A") == []
    v.instances["b"] = info("b", node="n2")
    assert [i.instance for i in v.live_instances("A", "n2")] == ["b"]
    assert v.live_instances("A", "n1") == []
    v.instances.pop("b")
    assert v.live_instances("A") == []


def test_a_stale_heartbeat_is_not_live_and_ends_the_cached_answer() -> None:
    v = view()
    v.instances["old"] = replace(info("old"), ts=time.time() - 6.0)
    assert v.live_instances("A") == []
    v.instances["new"] = replace(info("new"), ts=time.time() - 10.0)
    v.instances["new"] = info("new")  # its next heartbeat
    assert [i.instance for i in v.live_instances("A")] == ["new"]
    key = ("A", None)
    _, until, _ = v._live[key]
    assert until <= v.instances["new"].ts + 5.0  # no longer than its heartbeat is fresh
