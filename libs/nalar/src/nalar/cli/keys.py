"""`nalar keys create|ls|revoke`: API keys, straight in the cluster's Redis (an operator
command: it needs the store's URL and password, not a key of its own)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from nalar_common.auth import KeyStore
from nalar_common.redisclient import redis_client
from nalar_common.subjects import Names


async def _keys(args: argparse.Namespace) -> int:
    client = redis_client(args.redis_url)
    store = KeyStore(client, Names(args.prefix))
    try:
        if args.action == "create":
            if not args.name:
                print("nalar keys create: give --name", file=sys.stderr)
                return 2
            try:
                key = await store.create(args.name, args.role or [], args.tenant)
            except ValueError as exc:
                print(f"nalar keys create: {exc}", file=sys.stderr)
                return 2
            print(key)  # shown once: only its digest is stored
            return 0
        if args.action == "ls":
            rows = await store.list()
            if args.json:
                print(json.dumps(rows, indent=2))
                return 0
            for row in rows:
                state = "revoked" if row["revoked_at"] else "active"
                made = time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["created_at"]))
                print(f"{row['id']}  {state:<8} {row['name']:<20} tenant={row['tenant']} "
                      f"roles={','.join(row['roles']) or '-'}  created {made} UTC")
            return 0
        if not args.id:
            print("nalar keys revoke: give the key's id (from ls)", file=sys.stderr)
            return 2
        if not await store.revoke(args.id):
            print(f"nalar keys revoke: no key {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {args.id}")
        return 0
    finally:
        await client.aclose()


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys: create (prints the key once), ls, revoke")
    keys.add_argument("action", choices=["create", "ls", "revoke"])
    keys.add_argument("id", nargs="?", help="the key's id (revoke)")
    keys.add_argument("--name", help="the principal's name (create)")
    keys.add_argument("--role", action="append", help="a role (create; repeat for more)")
    keys.add_argument("--tenant", default="default", help="the principal's tenant (create)")
    keys.add_argument("--json", action="store_true", help="ls as JSON")
    keys.add_argument("--redis-url", default=os.environ.get("NALAR_REDIS_URL",
                                                            "redis://127.0.0.1:6379/0"))
    keys.add_argument("--prefix", default=os.environ.get("NALAR_NATS_PREFIX", ""))
    keys.set_defaults(fn=lambda args: asyncio.run(_keys(args)))
