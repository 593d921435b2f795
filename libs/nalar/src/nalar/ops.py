"""Operator commands over the gateway's HTTP API: `nalar cluster`, `nalar policy show|set|
history`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx


def _url(args: argparse.Namespace) -> str:
    return str(args.url).rstrip("/")


def _print(r: httpx.Response) -> int:
    print(json.dumps(r.json(), indent=2, default=str))
    return 0 if r.status_code < 400 else 1


def _cluster(args: argparse.Namespace) -> int:
    return _print(httpx.get(f"{_url(args)}/v1/cluster", timeout=10))


def _policy(args: argparse.Namespace) -> int:
    base = f"{_url(args)}/v1/policy"
    if args.action == "show":
        return _print(httpx.get(base, timeout=10))
    if args.action == "history":
        out: Any = httpx.get(base, params={"history": True}, timeout=10).json()
        print(json.dumps(out.get("history", []), indent=2))
        return 0
    if not args.policies:
        print("nalar policy set: name at least one module:Class", file=sys.stderr)
        return 2
    return _print(httpx.put(base, json={"policies": args.policies}, timeout=10))


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
