"""A service whose stop never ends (it swallows its cancellation) still exits: past the grace
and `STUCK_AFTER_S`, with code 70 and every thread's and task's stack in its output."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from nalar_common.testing import wait_until_sync

SERVICE = textwrap.dedent("""
    import asyncio, sys
    from nalar_common import process
    from nalar_common.settings import NatsSettings

    process.STUCK_AFTER_S = 0.5

    class Stubborn:
        async def run(self):
            print("ready", flush=True)
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:  # what some clients do to a cancellation
                    pass

        def stop(self):
            pass

    async def build(bus):
        return Stubborn()

    asyncio.run(process.run_service("stubborn", NatsSettings(url=sys.argv[1]), build,
                                    grace_s=0.5))
""")


def test_a_stop_that_never_ends_exits_with_the_stacks(nats_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, nats_url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        wait_until_sync(lambda: proc.poll() is not None, what="the stuck service to exit",
                        timeout=30)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 70, err
        assert "service.stop_stuck" in err and "Stubborn.run" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
