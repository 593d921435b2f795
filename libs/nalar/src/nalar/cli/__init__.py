"""The `nalar` command: `up` (embedded stack), `run` (a workflow, locally or on a stack),
`futures RUN` (read a run's futures from NATS), `stubs` (typed stubs) and `new` (a project).

Everything a command line needs lives in this package (`up` and its `supervisor`, `keys`,
`ops`, `runs`, `scaffold`, `credentials`); the rest of `nalar` is the user API and the
execution support agent hosts use."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from nalar.cli.up import UpOptions, run_up


def _up(args: argparse.Namespace) -> int:
    return run_up(UpOptions(
        app=Path(args.app), nodes=args.nodes, hosts_per_node=args.hosts_per_node,
        host=args.host, port=args.port, data_dir=Path(args.data_dir), prefix=args.prefix,
        nats_url=os.environ.get("NALAR_NATS_URL") or None,
        redis_url=os.environ.get("NALAR_REDIS_URL") or None,
        llm_time_scale=args.llm_time_scale,
        host_agents=[a for a in (args.host_agents or "").split(";") if a.strip()],
        host_slots=args.host_slots, engine_startup_s=args.engine_startup_s,
        spawn_hosts=args.spawn_hosts, policies=args.policies, key_file=Path(args.key_file)))


async def _futures(run: str, nats_url: str, prefix: str) -> list[dict[str, Any]]:
    from nalar_common.bus import connect
    from nalar_common.envelope import Envelope
    from nalar_common.settings import NatsSettings
    from nalar_common.subjects import Names
    from nalar_common.values import carried, public

    names = Names(prefix)
    bus = await connect(NatsSettings(url=nats_url, prefix=prefix), names, name="nalar-cli")
    try:
        found = await bus.multi_last(names.futures_stream, [names.futures_of_run(run)])
        rows = []
        for subject, m in sorted(found.items(), key=lambda kv: kv[1].seq):
            body = Envelope.decode(m.data).body
            if carried(m.headers):  # kept by reference: where it is, not the value
                body["value"] = public(body.get("value"), run, subject.rsplit(".", 1)[1])
            rows.append({"subject": subject,
                         "headers": {k: v for k, v in m.headers.items()
                                     if k.startswith("Nalar-")},
                         "status": body.get("status"),
                         "value" if body.get("status") == "ok" else "error":
                             body.get("value") if body.get("status") == "ok"
                             else body.get("error")})
        return rows
    finally:
        await bus.close()


def _print_futures(args: argparse.Namespace) -> int:
    rows = asyncio.run(_futures(args.run_id, args.nats_url, args.prefix))
    if not rows:
        print(f"no futures stored for run {args.run_id}", file=sys.stderr)
        return 1
    for row in rows:
        print(json.dumps(row, default=str))
    return 0


def _parse_body(text: str) -> tuple[dict[str, Any], str | None]:
    """`{"input": {...}, "session_id"?: ...}`, as in the HTTP API."""
    try:
        body = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise SystemExit(f"nalar run: the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("input", {}), dict):
        raise SystemExit('nalar run: the body must look like {"input": {...}, "session_id": ...}')
    unknown = set(body) - {"input", "session_id"}
    if unknown:
        raise SystemExit(f"nalar run: unknown fields {sorted(unknown)} (expected input, "
                         f"session_id)")
    return dict(body.get("input") or {}), body.get("session_id")


def _run(args: argparse.Namespace) -> int:
    from nalar_common.errors import NalarError

    input, session = _parse_body(args.body)
    if not args.local:
        import httpx

        from nalar.cli.credentials import auth_headers

        r = httpx.post(f"{args.url}/v1/workflows/{args.workflow}/runs",
                       params={"wait": args.wait}, headers=auth_headers(),
                       json={"input": input, **({"session_id": session} if session else {})},
                       timeout=args.wait + 30)
        print(json.dumps(r.json(), default=str))
        return 0 if r.status_code < 400 and r.json().get("status") == "succeeded" else 1
    from nalar.local import run_local

    try:
        value = asyncio.run(run_local(args.app, args.workflow, input, session=session,
                                      time_scale=args.llm_time_scale))
    except NalarError as exc:
        print(json.dumps({"status": "failed", "error": exc.to_wire()}, default=str))
        return 1
    print(json.dumps({"status": "succeeded", "result": value}, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nalar", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded stack serving an app")
    up.add_argument("--app", default="app", help="app directory (agents/, workflows/)")
    up.add_argument("--nodes", type=int, default=2, help="nodes (one local controller each)")
    up.add_argument("--hosts-per-node", type=int, default=1, help="agent hosts per node")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", default=".nalar/data")
    up.add_argument("--key-file", default=".nalar/api-key",
                    help="where the dev API key is written (and reused from)")
    up.add_argument("--prefix", default=os.environ.get("NALAR_NATS_PREFIX", ""))
    up.add_argument("--llm-time-scale", type=float, default=1.0,
                    help="scale every simulated LLM delay (0.01 = 100x faster)")
    up.add_argument("--policies", default="",
                    help="global controller policies (NALAR_GC_POLICIES); default: built-ins")
    up.add_argument("--host-agents", default="",
                    help='agents of each host of a node, e.g. "Chat;Code,Search" (host 1 runs '
                         "Chat, host 2 Code and Search, host 3 Chat, ...); default: all")
    up.add_argument("--host-slots", type=int, default=0,
                    help="agent instances a host may run when provisioned; 0 = no limit")
    up.add_argument("--engine-startup-s", type=float, default=0.0,
                    help="start-up time of a newly provisioned instance")
    up.add_argument("--spawn-hosts", type=int, default=0,
                    help="agent host processes each node may start when provisioning")
    up.set_defaults(fn=_up)

    fut = sub.add_parser("futures", help="list a run's futures as stored in NATS")
    fut.add_argument("run_id")
    fut.add_argument("--nats-url", default=os.environ.get("NALAR_NATS_URL",
                                                          "nats://127.0.0.1:4222"))
    fut.add_argument("--prefix", default=os.environ.get("NALAR_NATS_PREFIX", ""))
    fut.set_defaults(fn=_print_futures)

    run = sub.add_parser("run", help="run a workflow: in this process (--local) or on a stack")
    run.add_argument("app", help="app directory (used with --local)")
    run.add_argument("workflow")
    run.add_argument("body", nargs="?", default="{}",
                     help='JSON like the HTTP API: {"input": {...}, "session_id": "..."}')
    run.add_argument("--local", action="store_true", help="no servers: run it in-process")
    run.add_argument("--url", default=os.environ.get("NALAR_GATEWAY_URL",
                                                     "http://127.0.0.1:8080"))
    run.add_argument("--wait", type=float, default=300.0)
    run.add_argument("--llm-time-scale", type=float, default=None,
                     help="with --local: scale every simulated LLM delay (default: "
                     "NALAR_LLM_TIME_SCALE, else 1)")
    run.set_defaults(fn=_run)

    from nalar import stubgen
    from nalar.cli import keys, ops, runs, scaffold

    stubgen.register(sub)
    scaffold.register(sub)
    ops.register(sub)
    runs.register(sub)
    keys.register(sub)

    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
