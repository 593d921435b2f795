"""`nalar runs journal|executions|value|replay|fork|resume`: a run's audit journal, its
execution records, a future's value (streamed), a replay of it (optionally with some calls'
results overridden), a fork, and going on after a guardrail paused it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from nalar.cli.ops import _http, _print, _url


def parse_override(text: str) -> tuple[str, Any]:
    """`FUTURE=VALUE`: VALUE as JSON when it parses, else as the string it is."""
    future, sep, raw = text.partition("=")
    if not sep or not future.strip():
        raise argparse.ArgumentTypeError(f"--override {text!r}: give FUTURE=VALUE")
    try:
        return future.strip(), json.loads(raw)
    except json.JSONDecodeError:
        return future.strip(), raw


def _journal(args: argparse.Namespace) -> int:
    r = _http().get(f"{_url(args)}/v1/runs/{args.run}/journal", timeout=30)
    if args.json or r.status_code >= 400:
        return _print(r)
    j = r.json()
    who = j.get("started_by") or {}
    print(f"run {j['run_id']}  {j.get('workflow')}  {j.get('status')}  started by "
          f"{who.get('name')} (tenant {who.get('tenant')}, via {who.get('via')})"
          + (f"  replay of {j['replay_of']}" if j.get("replay_of") else ""))
    print(f"{'future':<8} {'call':<28} {'status':<8} {'tokens':>7} {'where':<24} "
          f"{'args':<14} policy")
    for c in j["calls"]:
        usage = c.get("usage") or {}
        tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        where = (c.get("replayed") and f"replay:{c['replayed']}") or c.get("executor") or \
            c.get("node") or ""
        pol = " ".join(f"{k}={v}" for k, v in (c.get("policy") or {}).items() if v)
        call = f"{c.get('agent')}.{c.get('method')}"
        print(f"{c['future']:<8} {call:<28} {c.get('status', 'pending'):<8} {tokens:>7} "
              f"{str(where)[:24]:<24} {str(c.get('args_digest') or '')[7:19]:<14} {pol}")
    return 0


def _executions(args: argparse.Namespace) -> int:
    r = _http().get(f"{_url(args)}/v1/runs/{args.run}/executions", timeout=30)
    if args.json or r.status_code >= 400:
        return _print(r)
    print(f"{'#':>3} {'node':<20} {'kind':<5} {'iter':>4} {'future':<8} {'status':<7} "
          f"{'ms':>9} {'tokens':>7} result")
    for i, e in enumerate(r.json()["executions"], 1):
        h, t, res = e.get("headers", {}), e.get("telemetry", {}), e.get("result") or {}
        shown = json.dumps(res.get("inline"))[:60] if res.get("inline") is not None or \
            not res.get("uri") else f"({res.get('size_bytes')} bytes at {res['uri']})"
        if e.get("error"):
            shown = f"error {e['error'].get('code')}: {e['error'].get('message', '')[:50]}"
        print(f"{i:>3} {h.get('node', ''):<20} {h.get('kind', ''):<5} {h.get('iteration', 0):>4} "
              f"{h.get('future', ''):<8} {h.get('status', ''):<7} "
              f"{t.get('latency_ms', 0):>9.1f} {t.get('tokens_used', 0):>7} {shown}")
    return 0


def _value(args: argparse.Namespace) -> int:
    """Stream the value to a file (or stdout) as the gateway sends it: bytes as they are,
    text as UTF-8, anything else as JSON."""
    url = f"{_url(args)}/v1/runs/{args.run}/futures/{args.future}/value"
    with _http().stream("GET", url, timeout=300) as r:
        if r.status_code >= 400:
            r.read()
            return _print(r)
        out = open(args.output, "wb") if args.output else sys.stdout.buffer
        try:
            for chunk in r.iter_bytes():
                out.write(chunk)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    return 0


def _replay(args: argparse.Namespace) -> int:
    body = {"overrides": dict(args.override or [])}
    params = {"wait": args.wait} if args.wait else {}
    return _print(_http().post(f"{_url(args)}/v1/runs/{args.run}/replay", json=body,
                               params=params, timeout=(args.wait or 0) + 30))


def _fork(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"at": args.at}
    if args.override is not None:
        body["override"] = parse_override(f"v={args.override}")[1]
    params = {"wait": args.wait} if args.wait else {}
    return _print(_http().post(f"{_url(args)}/v1/runs/{args.run}/fork", json=body,
                               params=params, timeout=(args.wait or 0) + 30))


def _resume(args: argparse.Namespace) -> int:
    value = parse_override(f"v={args.value}")[1] if args.value is not None else None
    return _print(_http().post(f"{_url(args)}/v1/runs/{args.run}/signals/resume",
                               json={"value": value}, timeout=30))


def register(sub: Any) -> None:
    url = os.environ.get("NALAR_GATEWAY_URL", "http://127.0.0.1:8080")
    runs = sub.add_parser("runs", help="a run's audit journal, execution records, replays, "
                          "resuming a paused run")
    acts = runs.add_subparsers(dest="action", required=True)
    journal = acts.add_parser("journal", help="who started the run and every call it made")
    journal.add_argument("run")
    journal.add_argument("--json", action="store_true", help="the whole record as JSON")
    journal.set_defaults(fn=_journal)
    executions = acts.add_parser("executions", help="an agent graph run's execution records")
    executions.add_argument("run")
    executions.add_argument("--json", action="store_true", help="the records as JSON")
    executions.set_defaults(fn=_executions)
    value = acts.add_parser("value", help="a future's value (the run's result by default), "
                            "streamed: large values come from the values bucket")
    value.add_argument("run")
    value.add_argument("--future", default="0", help="the future (default 0: the result)")
    value.add_argument("-o", "--output", help="write it to this file (default: stdout)")
    value.set_defaults(fn=_value)
    replay = acts.add_parser("replay", help="run a finished run again from its journal: "
                             "recorded results served, no tool called")
    replay.add_argument("run")
    replay.add_argument("--override", action="append", type=parse_override,
                        metavar="FUTURE=VALUE", help="this call's result instead of the "
                        "recorded one (VALUE is JSON, or a plain string); repeatable")
    replay.add_argument("--wait", type=float, default=60.0,
                        help="seconds to wait for the replay to finish (0: do not wait)")
    replay.set_defaults(fn=_replay)
    fork = acts.add_parser("fork", help="a new run that reuses a finished run's results up "
                           "to one future and runs live after it")
    fork.add_argument("run")
    fork.add_argument("--at", required=True, metavar="FUTURE",
                      help="the last future reused (an execution's future, for a graph)")
    fork.add_argument("--override", metavar="VALUE",
                      help="that future's result instead (JSON, or a plain string)")
    fork.add_argument("--wait", type=float, default=60.0,
                      help="seconds to wait for the fork to finish (0: do not wait)")
    fork.set_defaults(fn=_fork)
    resume = acts.add_parser("resume", help="let a run a guardrail paused go on")
    resume.add_argument("run")
    resume.add_argument("--value", help="recorded in the journal with who resumed it")
    resume.set_defaults(fn=_resume)
    for p in (journal, executions, value, replay, fork, resume):
        p.add_argument("--url", default=url)

