"""The services beside the data path, seen from outside: instances heartbeating into KV, the
global controller's snapshot, the state store's session registry, and `nalar up` itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest
from e2e_stack import BASIC_APP, StackHandle, config_env
from nalar_common.testing import wait_until, wait_until_sync

pytestmark = pytest.mark.e2e


async def test_instances_heartbeat_into_kv(stack: StackHandle) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        kv = await nc.jetstream().key_value(f"{stack.prefix}_nalar_instances")
        keys = set(await kv.keys())
        assert {"n1-h1.Echo", "n2-h1.Echo", "n1-h1._driver", "n2-h1._driver"} <= keys
        info = json.loads((await kv.get("n1-h1.Echo")).value)
        assert info["node"] == "n1" and info["agent"] == "Echo" and info["concurrency"] == 16
        assert time.time() - info["ts"] < 5
    finally:
        await nc.close()


async def test_global_controller_writes_policy_snapshot(stack: StackHandle) -> None:
    nc = await nats.connect(stack.nats_url)
    try:
        kv = await nc.jetstream().key_value(f"{stack.prefix}_nalar_policy")
        entry = await kv.get("snapshot")
        snap = json.loads(entry.value)
        assert snap["policies"] == ["LeastLoadedRouting", "SessionAffinity", "HeadOfLineMigration",
                                    "SessionPriority"]
        assert set(snap["routes"]["Echo"]) == {"n1", "n2"}
        assert all(w > 0 for w in snap["routes"]["Echo"].values())
        assert set(snap["instance_weights"]["Echo"]) == {"n1-h1.Echo", "n2-h1.Echo"}
        leader = json.loads((await kv.get("leader")).value)
        assert leader["expires_at"] > time.time() - 1
    finally:
        await nc.close()


async def test_local_controllers_publish_telemetry(stack: StackHandle) -> None:
    import msgpack

    nc = await nats.connect(stack.nats_url)
    try:
        sub = await nc.subscribe(f"{stack.prefix}.nalar.tel.n2")
        msg = await sub.next_msg(timeout=5)
        body = msgpack.unpackb(msg.data)["b"]
        assert body["node"] == "n2"
        echo = body["instances"]["n2-h1.Echo"]
        assert {"queue", "inflight", "concurrency", "p50_s", "p99_s", "sessions"} <= set(echo)
    finally:
        await nc.close()


async def test_state_store_registers_sessions(stack: StackHandle, http: httpx.Client) -> None:
    ids = [http.post("/v1/workflows/typed/runs", params={"wait": 30},
                     json={"input": {"count": i, "label": "s"}, "session_id": "registry-1"}
                     ).json()["run_id"] for i in range(2)]
    nc = await nats.connect(stack.nats_url)
    try:
        async def registered() -> dict[str, object] | None:
            reply = await nc.request(f"{stack.prefix}.nalar.state.session",
                                     json.dumps({"session_id": "registry-1"}).encode(), timeout=2)
            return json.loads(reply.data).get("session")  # type: ignore[no-any-return]

        session = await wait_until(registered, what="the session's two runs registered",
                                   until=lambda s: s and len(s["runs"]) == 2)
        assert [r["run_id"] for r in session["runs"]] == ids
        missing = json.loads((await nc.request(f"{stack.prefix}.nalar.state.session",
                                               b'{"session_id": "nope"}', timeout=2)).data)
        assert missing["error"]["code"] == "not_found"
    finally:
        await nc.close()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_nalar_up_embedded_servers_and_crash_of_a_part(tmp_path: Path) -> None:
    """Without NALAR_NATS_URL/REDIS_URL `nalar up` starts its own servers; a part that dies
    is started again and the stack stays up; SIGTERM stops everything, servers included."""
    from nalar_common.servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items()  # as a user has it: keys required
           if k not in ("NALAR_NATS_URL", "NALAR_REDIS_URL", "NALAR_AUTH_ANONYMOUS")}
    env.update(config_env(BASIC_APP, None))  # the test app has no policy: off, explicitly
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nalar", "up", "--app", str(BASIC_APP), "--nodes", "1",
             "--port", str(port), "--data-dir", str(tmp_path / "data"),
             "--key-file", str(tmp_path / "api-key")],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_sync(lambda: "Nalar is up" in log.read_text(), timeout=60,
                        what="`nalar up` to say it is up")
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text and "nats://127.0.0.1:" in text
        assert "redis://127.0.0.1:" in text and str(tmp_path / "data") in text
        # the dev key: printed, written owner-only, and the only way in
        key = (tmp_path / "api-key").read_text().strip()
        assert f"NALAR_API_KEY={key}" in text and key.startswith("nk_")
        assert (tmp_path / "api-key").stat().st_mode & 0o077 == 0
        url = f"http://127.0.0.1:{port}/v1/workflows/typed/runs"
        body = {"input": {"count": 1, "label": "up"}}
        assert httpx.post(url, json=body).status_code == 401
        r = httpx.post(url, params={"wait": 30}, json=body,
                       headers={"Authorization": f"Bearer {key}"})
        assert r.json()["result"] == "up:1"
        assert r.json()["started_by"] == {"name": "dev", "roles": ["admin"],
                                          "tenant": "default", "via": "api_key"}
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()
        assert list((tmp_path / "data" / "valkey").glob("appendonly*")), "AOF is on"
        kids = _children(proc.pid)
        assert len(kids) >= 7  # nats, valkey, state store, gc, lc, host, gateway
        host = next(k for k in kids if "nalar_agent_host" in
                    Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace"))
        os.kill(host, signal.SIGKILL)  # started again; the stack stays up
        wait_until_sync(lambda: "host-n1-1 exited with code -9; restarting" in log.read_text(),
                        timeout=60, what="the supervisor to see the host die")
        wait_until_sync(lambda: log.read_text().count("started host-n1-1 (pid") == 2,
                        timeout=60, what="the host started again")
        assert proc.poll() is None
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        wait_until_sync(lambda: not any(_alive(k) for k in kids), timeout=20,
                        what="every child process gone")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_nalar_up_stops_cleanly_on_sigint(tmp_path: Path, nats_url: str,
                                          redis_url: str) -> None:
    from nalar_common.servers import free_port

    port = free_port()
    log = tmp_path / "up.log"
    env = {**os.environ, "NALAR_NATS_URL": nats_url, "NALAR_REDIS_URL": redis_url,
           **config_env(BASIC_APP, None)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nalar", "up", "--app", str(BASIC_APP), "--nodes", "1",
             "--port", str(port), "--prefix", "sigint", "--data-dir", str(tmp_path / "d"),
             "--key-file", str(tmp_path / "api-key")],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_sync(lambda: "Nalar is up" in log.read_text(), timeout=60,
                    what="`nalar up` to say it is up")
    kids = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    assert proc.wait(60) == 0
    wait_until_sync(lambda: not any(_alive(k) for k in kids), timeout=20,
                    what="every child process gone")
    text = log.read_text()
    stopped = [line.split(" |", 1)[0].strip() for line in text.splitlines()
               if "service.stopped" in line]
    assert len(stopped) >= 4, f"clean stops: {stopped}\n{text[-6000:]}"  # ss, gc, lc, host
    assert "Traceback" not in text
