"""Typed wire messages: every body Nalar sends between its processes as a frozen, versioned
dataclass with `encode()` and `decode()`, in the envelope `nalar_common.envelope` describes.

    message          kind            subject                    type
    call             call            nalar.call.<node>.<agent>  nalar_common.calls.CallSpec
    result           result          nalar.fut.<run>.<future>   Result
    dispatch         dispatch        nalar.exec.<host>          Dispatch (deps: DepResult)
    done             (headers only)  nalar.done.<node>          Done
    control          control         nalar.ctl.<host>           ControlRequest
    control reply    control_reply   (reply)                    ControlReply
    guard            guard           nalar.guard.<node>         GuardReserve, GuardSettle
    guard reply      guard_reply     (reply)                    GuardAnswer
    telemetry        telemetry       nalar.tel.<node>           Telemetry (InstanceLoad)

Decoding raises only `DecodeError` (a `MalformedMessage`, code `malformed_message`), naming
the kind and the field. docs/protocol.md shows each type's fields as `nalar_common.wire.doc`
makes them: `python -m nalar_common.wire --doc` prints them, `--update docs/protocol.md`
rewrites them there.
"""

from nalar_common.wire.control import ControlOp, ControlReply, ControlRequest
from nalar_common.wire.dispatch import VERSION_HEADER, DepResult, Dispatch, Done, DoneStatus
from nalar_common.wire.guard import (
    GuardAction,
    GuardAnswer,
    GuardRequest,
    GuardReserve,
    GuardSettle,
    decode_guard,
)
from nalar_common.wire.record import DecodeError, Message, Record
from nalar_common.wire.result import Result
from nalar_common.wire.telemetry import InstanceLoad, Telemetry

__all__ = [
    "VERSION_HEADER",
    "ControlOp",
    "ControlReply",
    "ControlRequest",
    "DecodeError",
    "DepResult",
    "Dispatch",
    "Done",
    "DoneStatus",
    "GuardAction",
    "GuardAnswer",
    "GuardRequest",
    "GuardReserve",
    "GuardSettle",
    "InstanceLoad",
    "Message",
    "Record",
    "Result",
    "Telemetry",
    "decode_guard",
]
