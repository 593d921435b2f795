"""How a graph's state travels between the driver and the hosts that run its nodes: as JSON.

A node's input (the state in its input schema's form, or a `Send`'s argument) goes to its
future as JSON, and what the node returns (an update, a `Command`) comes back as JSON. So
state values must be JSON types (a tuple comes back a list), pydantic models or dataclasses
(sent as their fields, revived as the node's input schema when that is the state's model),
or LangChain messages (sent in LangChain's serialized form and revived as messages; only
message classes are revived, never other LangChain objects a run's input could name).
"""

from __future__ import annotations

import dataclasses
import enum
import warnings
from collections.abc import Mapping
from typing import Any

from langgraph.types import Command, Send
from nalar_common.errors import InvalidInput
from pydantic import BaseModel

_LC = "lc"  # the marker of LangChain's serialized form


def to_json(value: Any, where: str = "state") -> Any:
    """`value` in JSON types; `InvalidInput` naming where a value that is not JSON-able is."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{where}: keys must be strings, not {type(k).__name__}")
            out[k] = to_json(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if _is_lc(value):
        from langchain_core.load import dumpd

        return to_json(dumpd(value), where)
    if isinstance(value, BaseModel):
        return to_json(value.model_dump(mode="json"), where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json({f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                       where)
    if isinstance(value, enum.Enum):
        return to_json(value.value, where)
    raise InvalidInput(f"{where}: a {type(value).__name__} cannot travel between the driver "
                       "and the hosts (graph state must be JSON, pydantic models, dataclasses "
                       "or LangChain messages)", details={"where": where})


def from_json(value: Any) -> Any:
    """JSON with LangChain messages revived (only message classes: see the module doc)."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        if value.get(_LC) == 1 and value.get("type") == "constructor":
            return _revive(value)
        return {k: from_json(v) for k, v in value.items()}
    return value


def as_input(value: Any, schema: Any) -> Any:
    """A node's JSON input in the form its input schema gives it (a model, a dataclass)."""
    value = from_json(value)
    if isinstance(value, dict) and isinstance(schema, type):
        if issubclass(schema, BaseModel):
            return schema.model_validate(value)
        if dataclasses.is_dataclass(schema):
            return schema(**value)
    return value


def _is_lc(value: Any) -> bool:
    try:
        from langchain_core.load.serializable import Serializable
    except ImportError:  # pragma: no cover - langgraph depends on langchain-core
        return False
    return isinstance(value, Serializable) and value.is_lc_serializable()


def _revive(value: dict[str, Any]) -> Any:
    from langchain_core.load import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `load` is marked beta
        try:
            return load(value, allowed_objects="messages")
        except Exception as exc:
            raise InvalidInput(f"a serialized LangChain object in the graph state could not be "
                               f"revived (only messages are): {exc}") from None


# -- what a node returns ---------------------------------------------------------------------
def encode_output(value: Any) -> dict[str, Any]:
    """A node's return value as JSON: `{"update": ...}` or `{"command": {...}}`."""
    if isinstance(value, Command):
        if value.graph is not None:
            raise InvalidInput("Command(graph=...) is not supported on Nalar: a graph's nodes "
                               "run as futures, there is no parent graph to send it to")
        return {"command": {"update": to_json(value.update, "Command.update"),
                            "goto": _encode_goto(value.goto),
                            "resume": to_json(value.resume, "Command.resume")}}
    if isinstance(value, BaseModel):  # a node returning the state's model: the fields it set
        return {"update": to_json(value.model_dump(mode="json", exclude_unset=True), "update")}
    return {"update": to_json(value, "update")}


def decode_output(out: Mapping[str, Any]) -> Any:
    """What the node returned, for the graph in the driver (messages revived, a `Command`
    rebuilt)."""
    if "command" in out:
        c = out["command"]
        return Command(update=from_json(c.get("update")), goto=_decode_goto(c.get("goto")),
                       resume=from_json(c.get("resume")))
    return from_json(out.get("update"))


def _encode_goto(goto: Any) -> Any:
    if isinstance(goto, Send):
        return {"send": goto.node, "arg": to_json(goto.arg, f"Send({goto.node}).arg")}
    if isinstance(goto, list | tuple):
        return [_encode_goto(g) for g in goto]
    return goto  # a node name ("" or () when there is none)


def _decode_goto(goto: Any) -> Any:
    if isinstance(goto, dict) and "send" in goto:
        return Send(goto["send"], from_json(goto.get("arg")))
    if isinstance(goto, list):
        return [_decode_goto(g) for g in goto]
    return goto if goto is not None else ()


__all__ = ["as_input", "decode_output", "encode_output", "from_json", "to_json"]
