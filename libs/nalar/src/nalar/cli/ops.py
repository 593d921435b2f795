"""Operator commands over the gateway's HTTP API: `nalar cluster`, `nalar policy show|set|
history`, `nalar dlq ls|show|retry|discard`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from nalar.cli.credentials import auth_headers


def _http() -> httpx.Client:
    """A client with the caller's API key on every request (one command, one client)."""
    return httpx.Client(headers=auth_headers())


def _url(args: argparse.Namespace) -> str:
    return str(args.url).rstrip("/")


def _print(r: httpx.Response) -> int:
    print(json.dumps(r.json(), indent=2, default=str))
    return 0 if r.status_code < 400 else 1


def _cluster(args: argparse.Namespace) -> int:
    return _print(_http().get(f"{_url(args)}/v1/cluster", timeout=10))


def _policy(args: argparse.Namespace) -> int:
    base = f"{_url(args)}/v1/policy"
    if args.action == "show":
        return _print(_http().get(base, timeout=10))
    if args.action == "history":
        out: Any = _http().get(base, params={"history": True}, timeout=10).json()
        print(json.dumps(out.get("history", []), indent=2))
        return 0
    if not args.policies:
        print("nalar policy set: name at least one module:Class", file=sys.stderr)
        return 2
    return _print(_http().put(base, json={"policies": args.policies}, timeout=10))


def _dlq(args: argparse.Namespace) -> int:
    base = f"{_url(args)}/v1/dlq"
    if args.action == "ls":
        params: dict[str, Any] = {"limit": args.limit}
        if args.kind:
            params["kind"] = args.kind
        r = _http().get(base, params=params, timeout=30)
        if r.status_code >= 400:
            return _print(r)
        rows = r.json()["dead_letters"]
        if not rows:
            print("no dead letters")
        for e in rows:
            what = f"{e['agent']}.{e['method']} run {e['run_id']} future {e['future']}" \
                if e.get("agent") else e.get("subject")
            print(f"{e['id']:>8}  {e['kind']:<10} {what}  — {e['reason']}")
        return 0
    if args.id is None:
        print(f"nalar dlq {args.action}: give the dead letter's id", file=sys.stderr)
        return 2
    if args.action == "show":
        return _print(_http().get(f"{base}/{args.id}", timeout=10))
    return _print(_http().post(f"{base}/{args.id}/{args.action}", timeout=30))


def register(sub: Any) -> None:
    url = os.environ.get("NALAR_GATEWAY_URL", "http://127.0.0.1:8080")
    cluster = sub.add_parser("cluster", help="nodes, instances and the running policy")
    cluster.add_argument("--url", default=url)
    cluster.set_defaults(fn=_cluster)
    policy = sub.add_parser("policy", help="show, set (switch at run time) or list policies")
    policy.add_argument("action", choices=["show", "set", "history"])
    policy.add_argument("policies", nargs="*", help="module:Class ... (for set)")
    policy.add_argument("--url", default=url)
    policy.set_defaults(fn=_policy)
    dlq = sub.add_parser("dlq", help="dead letters: list, show, retry (calls) or discard")
    dlq.add_argument("action", choices=["ls", "show", "retry", "discard"])
    dlq.add_argument("id", nargs="?", type=int, help="the dead letter's id (from ls)")
    dlq.add_argument("--kind", help="only this kind (call, exec, done, ...)")
    dlq.add_argument("--limit", type=int, default=100)
    dlq.add_argument("--url", default=url)
    dlq.set_defaults(fn=_dlq)
