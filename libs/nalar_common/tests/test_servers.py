"""`start_nats` returns a server whose JetStream is up, with the streams of its data folder
recovered, so the first JetStream request of a caller never meets a half-started server."""

from __future__ import annotations

from pathlib import Path

import nats
from nalar_common.servers import nats_healthy, start_nats


async def test_start_nats_returns_with_jetstream_and_its_streams(tmp_path: Path) -> None:
    server = start_nats(tmp_path)
    try:
        assert server.monitor_port is not None and nats_healthy(server.monitor_port)
        nc = await nats.connect(server.url)
        await nc.jetstream().add_stream(name="KEEP", subjects=["keep.>"])
        await nc.jetstream().publish("keep.a", b"1")
        await nc.close()
    finally:
        server.stop()
    assert not nats_healthy(server.monitor_port)

    again = start_nats(tmp_path)  # same data folder: the stream is recovered before it returns
    try:
        nc = await nats.connect(again.url)
        info = await nc.jetstream().stream_info("KEEP")
        assert info.state.messages == 1
        await nc.close()
    finally:
        again.stop()
