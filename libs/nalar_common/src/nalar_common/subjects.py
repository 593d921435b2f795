"""Every NATS subject, stream, bucket, header and Redis key name, built in one place.

A `Names(prefix)` value object keeps test runs (random prefix) and deployments apart;
no service formats a subject itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+\Z")
ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}\Z")
"""The one charset of run ids, session ids and signal names: they go into subjects (one
token each) and Redis keys."""

DRIVER_AGENT = "_driver"
"""Pseudo-agent that runs workflow drivers: its method is the workflow name."""

ROOT_FUTURE = "0"
"""Future id of a run's driver; its result is the run's result."""


SIGNAL_FUTURE_PREFIX = "sig-"


def signal_future(name: str) -> str:
    """Future id of the signal `name` of a run: fixed by the name, so the gateway that
    receives the signal and a re-executed driver agree on it without asking anyone."""
    return SIGNAL_FUTURE_PREFIX + check_token(name, "signal name")


def is_signal_future(future: str) -> bool:
    return future.startswith(SIGNAL_FUTURE_PREFIX)


class Headers:
    """Header names on call and future messages (DESIGN §3)."""

    FUTURE = "Nalar-Future"
    RUN = "Nalar-Run"
    SESSION = "Nalar-Session"
    DEPS = "Nalar-Deps"
    PARENT = "Nalar-Parent"
    AGENT = "Nalar-Agent"
    METHOD = "Nalar-Method"
    PRIORITY = "Nalar-Priority"
    ATTEMPT = "Nalar-Attempt"
    EXECUTOR = "Nalar-Executor"
    STATUS = "Nalar-Status"
    POLICY_REV = "Nalar-Policy-Rev"
    DEADLINE = "Nalar-Deadline"
    INSTANCE = "Nalar-Instance"
    HOP = "Nalar-Hop"
    DISPATCH = "Nalar-Dispatch"
    TOKENS = "Nalar-Tokens"  # on `done`: LLM tokens the call used (prompt + output)
    CONTEXT_TOKENS = "Nalar-Context-Tokens"  # on `done`: the KV context its last LLM use left
    RETRY_AFTER = "Nalar-Retry-After"  # on `done` with status retry: seconds before the next try
    VALUE_REF = "Nalar-Value-Ref"  # on calls and results: the values kept by reference in it
    MSG_ID = "Nats-Msg-Id"
    EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"


def check_id(value: str, what: str) -> str:
    """A run id, session id or signal name: 1-128 of [A-Za-z0-9_-], or ValueError."""
    if not isinstance(value, str) or not ID.match(value):
        raise ValueError(f"{what} must be 1-128 characters of [A-Za-z0-9_-]")
    return value


def key_part(value: str) -> str:
    """One part of a Redis key taken from data (a tenant, an idempotency key, a session id):
    percent-escaped, so no value holds the `:` that separates parts and no two values of
    different parts read as the same key."""
    return quote(value, safe="")


def check_token(value: str, what: str) -> str:
    """Validate one subject token (ids, agent and node names)."""
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} must match [A-Za-z0-9_-]+")
    return value


@dataclass(frozen=True, slots=True)
class Names:
    """Names of subjects, streams, buckets and keys under an optional prefix."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if self.prefix:
            check_token(self.prefix, "prefix")

    # -- roots ---------------------------------------------------------------
    @property
    def root(self) -> str:
        return f"{self.prefix}.nalar" if self.prefix else "nalar"

    def _stream(self, name: str) -> str:
        return f"{self.prefix.upper()}_{name}" if self.prefix else name

    def _bucket(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    # -- streams -------------------------------------------------------------
    @property
    def calls_stream(self) -> str:
        return self._stream("NALAR_CALLS")

    @property
    def futures_stream(self) -> str:
        return self._stream("NALAR_FUTURES")

    @property
    def runs_stream(self) -> str:
        return self._stream("NALAR_RUNS")

    @property
    def dlq_stream(self) -> str:
        """Dead letters: calls past their deliveries, and messages no service could read."""
        return self._stream("NALAR_DLQ")

    # -- buckets -------------------------------------------------------------
    @property
    def policy_bucket(self) -> str:
        return self._bucket("nalar_policy")

    @property
    def values_bucket(self) -> str:
        """Object Store of values too large for a message (`nalar_common.values`)."""
        return self._bucket("nalar_values")

    @property
    def instances_bucket(self) -> str:
        return self._bucket("nalar_instances")

    @property
    def pins_bucket(self) -> str:
        """Which instance serves a session of a stateful agent (key from `pin_key`)."""
        return self._bucket("nalar_pins")

    @staticmethod
    def pin_key(agent: str, session: str) -> str:
        return f"{agent}.{session.encode().hex()}"

    POLICY_KEY = "snapshot"
    LEADER_KEY = "leader"
    CONFIG_KEY = "config"  # {"policies": ["module:Class", ...]}: set with PUT /v1/policy

    # -- subjects ------------------------------------------------------------
    def call(self, node: str, agent: str) -> str:
        return f"{self.root}.call.{node}.{agent}"

    def calls_for_node(self, node: str) -> str:
        return f"{self.root}.call.{node}.>"

    @property
    def all_calls(self) -> str:
        return f"{self.root}.call.>"

    def future(self, run: str, future: str) -> str:
        return f"{self.root}.fut.{run}.{future}"

    def dlq(self, kind: str) -> str:
        """Where a dead letter goes; `kind` names what it was (call, exec, done, ...)."""
        return f"{self.root}.dlq.{kind}"

    @property
    def all_dlq(self) -> str:
        return f"{self.root}.dlq.>"

    def kind_of(self, subject: str) -> str:
        """The kind of a Nalar subject (`call` for `nalar.call.n1.A`), for dead letters."""
        rest = subject[len(self.root) + 1:] if subject.startswith(self.root + ".") else subject
        token = rest.split(".", 1)[0]
        return token if _TOKEN.match(token) else "other"

    def futures_of_run(self, run: str) -> str:
        return f"{self.root}.fut.{run}.>"

    @property
    def all_futures(self) -> str:
        return f"{self.root}.fut.>"

    def run_event(self, run: str, event: str) -> str:
        return f"{self.root}.run.{run}.{event}"

    def run_events(self, run: str) -> str:
        return f"{self.root}.run.{run}.>"

    def run_events_last(self, run: str) -> str:
        return f"{self.root}.run.{run}.*"

    @property
    def all_run_events(self) -> str:
        return f"{self.root}.run.>"

    def run_created_all(self) -> str:
        return f"{self.root}.run.*.created"

    def exec(self, host: str) -> str:
        """Core subject on which a local controller hands a call to one agent host."""
        return f"{self.root}.exec.{host}"

    def done(self, node: str) -> str:
        """Core subject on which agent hosts tell their local controller a call finished."""
        return f"{self.root}.done.{node}"

    def control(self, host: str) -> str:
        """Core subject on which a local controller tells one of its agent hosts to start or
        stop an agent instance (provisioning)."""
        return f"{self.root}.ctl.{host}"

    def cancel(self, run: str) -> str:
        """Core subject announcing that a run was cancelled (controllers and hosts listen)."""
        return f"{self.root}.cancel.{run}"

    @property
    def all_cancels(self) -> str:
        return f"{self.root}.cancel.*"

    def guardrail(self, node: str) -> str:
        """Core subject on which agent hosts ask their local controller before each LLM
        request of a run that guardrails bind (and settle after it)."""
        return f"{self.root}.guard.{node}"

    def resume(self, run: str) -> str:
        """Core subject announcing that a run paused by a guardrail may go on."""
        return f"{self.root}.resume.{run}"

    @property
    def all_resumes(self) -> str:
        return f"{self.root}.resume.*"

    def telemetry(self, node: str) -> str:
        return f"{self.root}.tel.{node}"

    @property
    def all_telemetry(self) -> str:
        return f"{self.root}.tel.*"

    def state_request(self, op: str) -> str:
        return f"{self.root}.state.{op}"

    # -- consumers -----------------------------------------------------------
    def node_consumer(self, node: str) -> str:
        return f"lc_{node}"

    STATE_STORE_CONSUMER = "state_store_registry"

    # -- redis keys ----------------------------------------------------------
    def redis(self, *parts: str) -> str:
        base = f"{self.prefix}:nalar" if self.prefix else "nalar"
        return ":".join((base, *parts))

    def session_key(self, session: str, what: str) -> str:
        """Hash-tagged per session so one Redis Cluster slot holds a whole session."""
        return self.redis("{" + session + "}", what)

    def idempotency_key(self, tenant: str, key: str) -> str:
        """Per tenant: the same key from two tenants names two runs."""
        return self.redis("idem", "run", key_part(tenant), key_part(key))
