"""Tool calling without a stack: schemas from type hints, the argument check, the simulated
engine's deterministic and scripted tool calls, the OpenAI client's tool-call stream, and
what `AgentLoop` refuses when it is defined."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import nalar
import pytest
from nalar.app import load_app
from nalar.engines import LLMRequest, SimulatedEngine
from nalar.engines.openai import OpenAIEngine
from nalar.toolspec import ToolArgumentsError, tool_spec
from pydantic import BaseModel, BeforeValidator, Field


class Unit(Enum):
    C = "celsius"
    F = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str = "FR"


def forecast(place: Place, days: Annotated[int, Field(ge=1, le=7, description="how many")],
             unit: Unit = Unit.C, detail: Literal["short", "long"] = "short") -> str:
    """The forecast for a place.

    More words that are not the description."""
    return f"{place.city} {days} {unit.value} {detail}"


def test_the_schema_comes_from_the_type_hints() -> None:
    spec = tool_spec(forecast)
    fn = spec.schema()["function"]
    assert fn["name"] == "forecast" and fn["description"] == "The forecast for a place."
    params = fn["parameters"]
    assert params["type"] == "object" and params["required"] == ["place", "days"]
    assert params["additionalProperties"] is False
    assert params["properties"]["days"] == {"type": "integer", "minimum": 1, "maximum": 7,
                                           "description": "how many"}
    assert params["properties"]["detail"]["enum"] == ["short", "long"]
    assert "$defs" in params and "Place" in params["$defs"]


def test_checked_arguments_are_converted_to_the_annotated_types() -> None:
    spec = tool_spec(forecast)
    kwargs = spec.check('{"place": {"city": "Oslo"}, "days": "3", "unit": "fahrenheit"}')
    assert kwargs["place"] == Place(city="Oslo") and kwargs["days"] == 3
    assert kwargs["unit"] is Unit.F and kwargs["detail"] == "short"
    assert forecast(**kwargs) == "Oslo 3 fahrenheit short"
    assert spec.checked_json('{"place": {"city": "Oslo"}, "days": 3, "unit": "fahrenheit"}') \
        == {"place": {"city": "Oslo", "country": "FR"}, "days": 3, "unit": "fahrenheit",
            "detail": "short"}


@pytest.mark.parametrize(("arguments", "says"), [
    ('{"copout": "32"}', "place: Field required"),
    ('{"place": {"city": "x"}, "days": 9}', "days: Input should be less than or equal to 7"),
    ('{"place": {"city": "x"}, "days": 1, "extra": 1}', "extra: Extra inputs are not permitted"),
    ("{nope", "are not JSON"),
    ('"Paris"', "must be a JSON object, not str"),
    ("[1, 2]", "must be a JSON object, not list"),
])
def test_arguments_that_do_not_fit_say_what_is_wrong(arguments: str, says: str) -> None:
    with pytest.raises(ToolArgumentsError, match="forecast") as info:
        tool_spec(forecast).check(arguments)
    assert says in info.value.message
    assert info.value.error_code == "invalid_input"


def city_weather(city: str) -> str:
    return city


def test_a_bare_value_is_the_only_parameter_of_a_one_parameter_tool() -> None:
    spec = tool_spec(city_weather)
    assert spec.check('"Paris"') == {"city": "Paris"}
    with pytest.raises(ToolArgumentsError, match="city: Input should be a valid string"):
        spec.check("[1, 2]")
    with pytest.raises(ToolArgumentsError, match="must be a JSON object, not str"):
        tool_spec(forecast).check('"Paris"')  # two parameters: no guess


def test_parameters_a_json_object_cannot_give_are_refused() -> None:
    def star(*items: int) -> None: ...
    def positional(a: int, /) -> None: ...
    def private(_x: int) -> None: ...

    for fn, name in ((star, "items"), (positional, "a"), (private, "_x")):
        with pytest.raises(ValueError, match=f"parameter {name!r} cannot be given by name"):
            tool_spec(fn)


def test_a_hint_that_does_not_resolve_is_any_json_the_others_stay_typed() -> None:
    def lookup(city: str, when: NotImportedHere) -> AlsoMissing:  # type: ignore[name-defined]  # noqa: F821
        return city

    spec = tool_spec(lookup)
    assert spec.parameters["properties"]["city"] == {"type": "string"}
    assert spec.check('{"city": "Oslo", "when": [1]}') == {"city": "Oslo", "when": [1]}
    with pytest.raises(ToolArgumentsError, match="city: Input should be a valid string"):
        spec.check('{"city": 3, "when": 1}')


def split(v: Any) -> list[str]:
    return v.split(",")  # type: ignore[no-any-return]  # an AttributeError for a number


def names(ns: Annotated[list[str], BeforeValidator(split)]) -> int:
    return len(ns)


def test_validators_that_fail_oddly_and_deep_json_are_tool_errors() -> None:
    with pytest.raises(ToolArgumentsError, match="AttributeError"):
        tool_spec(names).check('{"ns": 5}')
    with pytest.raises(ToolArgumentsError, match="not JSON"):
        tool_spec(remember).check("[" * 100_000)


def test_tool_names_are_what_apis_accept() -> None:
    with pytest.raises(ValueError, match="tool name 'has space'"):
        tool_spec(forecast, name="has space")
    assert tool_spec(forecast, name="f-1").name == "f-1"


# -- the simulated engine ---------------------------------------------------------------------
WEATHER = tool_spec(forecast).schema()


def ask(**kw: Any) -> LLMRequest:
    messages = kw.pop("messages", [{"role": "user", "content": "Weather in Lyon today?"}])
    return LLMRequest(messages=messages, tools=kw.pop("tools", [WEATHER]), max_tokens=32, **kw)


async def test_the_simulated_engine_calls_a_tool_then_answers() -> None:
    engine = SimulatedEngine(time_scale=0.0)
    first = await engine.complete(ask(tool_choice="auto"))
    [call] = first.tool_calls
    assert first.text == "" and first.finish_reason == "tool_calls" and call.name == "forecast"
    tool_spec(forecast).check(call.arguments)  # filled from the schema: it fits
    again = await SimulatedEngine(time_scale=0.0).complete(ask(tool_choice="auto"))
    assert again.tool_calls == first.tool_calls  # same seed, same prompt: same call
    answered = ask(messages=[
        {"role": "user", "content": "Weather in Lyon today?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name, "arguments": call.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "rain"}])
    final = await engine.complete(answered)
    assert final.text and not final.tool_calls and final.finish_reason in ("stop", "length")
    forced = await engine.complete(LLMRequest(**{**answered.__dict__,
                                                 "tool_choice": "required"}))
    assert forced.tool_calls  # "required": a call even after the tool's answer
    none = await engine.complete(ask(tool_choice="none"))
    assert none.text and not none.tool_calls


async def test_a_named_tool_choice_calls_that_tool() -> None:
    other = tool_spec(forecast, name="other").schema()
    out = await SimulatedEngine(time_scale=0.0).complete(ask(
        tools=[WEATHER, other], tool_choice={"type": "function",
                                             "function": {"name": "other"}}))
    assert [c.name for c in out.tool_calls] == ["other"]


async def test_a_script_says_what_each_turn_proposes() -> None:
    engine = SimulatedEngine(time_scale=0.0, script={
        "Lyon": [{"tool_calls": [{"name": "forecast", "arguments": {"copout": "32"}},
                                 {"name": "forecast", "arguments": "raw text"}]},
                 {"text": "done here"}]})
    first = await engine.complete(ask())
    assert [(c.name, c.arguments) for c in first.tool_calls] == [
        ("forecast", '{"copout": "32"}'), ("forecast", "raw text")]
    second = await engine.complete(ask(messages=[
        {"role": "user", "content": "Weather in Lyon today?"},
        {"role": "assistant", "content": None}]))
    assert second.text == "done here" and not second.tool_calls
    unscripted = await engine.complete(ask(messages=[{"role": "user", "content": "Paris?"}]))
    assert unscripted.tool_calls and unscripted.tool_calls[0].name == "forecast"


def test_a_malformed_script_is_refused() -> None:
    with pytest.raises(ValueError, match=r"script\['k'\]\[0\] must be"):
        SimulatedEngine(time_scale=0.0, script={"k": [{"call": "x"}]})


async def test_tool_calls_are_not_streamed_as_text() -> None:
    pieces: list[str] = []
    out = await SimulatedEngine(time_scale=0.0).complete(ask(tool_choice="required"),
                                                         pieces.append)
    assert out.tool_calls and pieces == []


# -- the OpenAI-compatible client ---------------------------------------------------------------
async def test_tools_go_through_and_streamed_tool_calls_are_put_together() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        chunks = [
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {
                "name": "forecast", "arguments": '{"place": '}}]}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {
                "arguments": '{"city": "Oslo"}, "days": 2}'}}]}}]},
            {"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {
                "name": "forecast", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}}]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body)

    engine = OpenAIEngine(["http://e/v1"], model="m",
                          client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    out = await engine.complete(ask(tool_choice="required"))
    assert seen[0]["tools"] == [WEATHER] and seen[0]["tool_choice"] == "required"
    assert [c.to_dict() for c in out.tool_calls] == [
        {"id": "c1", "name": "forecast", "arguments": '{"place": {"city": "Oslo"}, "days": 2}'},
        {"id": "c2", "name": "forecast", "arguments": "{}"}]
    assert out.finish_reason == "tool_calls" and out.text == ""
    await engine.complete(LLMRequest(messages=[{"role": "user", "content": "hi"}]))
    assert "tools" not in seen[1] and "tool_choice" not in seen[1]


# -- what AgentLoop refuses --------------------------------------------------------------------
def test_an_agent_loop_refuses_what_it_cannot_run() -> None:
    def local(x: int) -> int:
        return x

    class Plain:
        def m(self) -> None: ...

    with pytest.raises(ValueError, match="max_turns must be a positive integer"):
        nalar.AgentLoop("a", max_turns=0)
    with pytest.raises(ValueError, match="agent name '_a'"):
        nalar.AgentLoop("_a")
    with pytest.raises(ValueError, match="must be defined at module level"):
        nalar.AgentLoop("a", tools=[local])
    with pytest.raises(ValueError, match="must be defined at module level"):
        nalar.AgentLoop("a", tools=[Plain.m])
    with pytest.raises(TypeError, match="a tool must be a function"):
        nalar.AgentLoop("a", tools=["forecast"])
    with pytest.raises(ValueError, match="two tools are named 'forecast'"):
        nalar.AgentLoop("a", tools=[forecast, forecast])


def test_an_agent_named_like_a_builtin_is_refused(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "mine.py").write_text(
        "import nalar\n\n@nalar.agent(name='llm')\nclass Mine:\n    def x(self) -> int:\n"
        "        return 1\n\n\n@nalar.tool\ndef ping() -> str:\n    return 'pong'\n\n\n"
        "loop = nalar.AgentLoop('pinger', tools=[ping])\n")
    with pytest.raises(nalar.InvalidInput, match="agent name 'llm' is the built-in agent"):
        load_app(tmp_path)


def remember(topic: str = "general", **facts: Any) -> dict[str, Any]:
    """Keep whatever facts the model gives."""
    return {"topic": topic, **facts}


def test_a_tool_with_keyword_arguments_takes_any_further_arguments() -> None:
    spec = tool_spec(remember)
    assert spec.parameters["additionalProperties"] is True
    kwargs = spec.check('{"copout": "32", "city": ["x"]}')
    assert remember(**kwargs) == {"topic": "general", "copout": "32", "city": ["x"]}
    assert spec.checked_json({"a": 1, "topic": "t"}) == {"topic": "t", "a": 1}
    with pytest.raises(ToolArgumentsError, match="topic: Input should be a valid string"):
        spec.check('{"topic": 3}')


def test_the_apps_agents_package_wins_over_the_sdks(tmp_path: Path) -> None:
    """The OpenAI Agents SDK installs a package named `agents`: an app's `agents/` directory
    (no `__init__.py`) is still what `from agents.x import X` finds, and importing the SDK
    from such an app says why it cannot."""
    from nalar.apppackages import forget_package

    forget_package("agents")  # an app loaded earlier in this process
    import agents as sdk  # the installed SDK

    assert hasattr(sdk, "Runner")
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "mine.py").write_text(
        "import nalar\n\n@nalar.agent\nclass Mine:\n    def x(self) -> int:\n        return 1\n")
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.py").write_text(
        "import nalar\nfrom agents.mine import Mine\n\n@nalar.workflow\ndef w() -> int:\n"
        "    return nalar.stub(Mine).x().value()\n")
    app = load_app(tmp_path)
    assert "Mine" in app.agents and "w" in app.workflows
    with pytest.raises(ImportError, match="such as the OpenAI Agents SDK's"):
        exec("from agents import Runner", {})
    # a module name the SDK also has is the app's, even with the SDK imported before
    forget_package("agents")
    import agents.memory

    (tmp_path / "agents" / "memory.py").write_text("MINE = True\n")
    load_app(tmp_path)
    import agents.memory as mine

    assert getattr(mine, "MINE", False) is True
    forget_package("agents")  # the SDK's modules come back
    import agents.memory as theirs

    assert not hasattr(theirs, "MINE") and hasattr(sdk, "Runner")


def test_odd_tool_call_chunks_are_read_not_fatal() -> None:
    from nalar.engines.openai import _add_calls

    calls: dict[int, dict[str, str]] = {}
    _add_calls(calls, [{"id": "a", "function": {"name": "f", "arguments": '{"x":'}}])
    _add_calls(calls, [{"function": {"arguments": "1}"}}])  # no index: the same call
    _add_calls(calls, [{"id": "b", "function": {"name": "g", "arguments": {"y": 2}}}])
    _add_calls(calls, [{"index": 0, "id": "c", "function": {"name": "h"}}])  # index reused
    _add_calls(calls, [{"index": 3, "function": "not a dict"}, "junk", None])
    _add_calls(calls, "not a list")
    assert [calls[i] for i in sorted(calls)][:3] == [
        {"id": "a", "name": "f", "arguments": '{"x":1}'},
        {"id": "b", "name": "g", "arguments": '{"y": 2}'},
        {"id": "c", "name": "h", "arguments": ""}]


class _Base:
    def add(self, a: int, b: int) -> int:
        return a + b


@nalar.agent(name="Restricted")
class _Sub(_Base):
    pass


def test_an_inherited_method_is_named_with_its_agent() -> None:
    loop = nalar.AgentLoop("a", tools=[(_Sub, "add")])
    tool = loop.tools["add"]
    assert (tool.agent, tool.method) == ("Restricted", "add")
    with pytest.raises(ValueError, match="not a public method"):
        nalar.AgentLoop("b", tools=[(_Sub, "nope")])


async def test_the_simulated_engine_copes_with_odd_schemas() -> None:
    odd = [{"type": "function", "function": {"name": "a", "parameters": "x"}},
           {"type": "function", "function": {"name": "b", "parameters": {
               "type": "object", "required": ["p", "q", "r"], "properties": {
                   "p": {"anyOf": ["str", {"type": "null"}]}, "q": {"type": "array",
                                                                   "items": True},
                   "r": {"enum": []}}}}},
           "junk", {"function": "junk"}]
    for seed in range(6):
        out = await SimulatedEngine(time_scale=0.0, seed=seed).complete(
            ask(tools=odd, tool_choice="required"))
        assert out.tool_calls and out.tool_calls[0].name in ("a", "b")


def test_script_steps_are_checked_key_by_key() -> None:
    with pytest.raises(ValueError, match=r"script\[0\] must be"):
        SimulatedEngine(time_scale=0.0, script=[{"tool_calls": [{"name": "x", "args": {}}]}])
    with pytest.raises(ValueError, match=r"script\[0\] must be"):
        SimulatedEngine(time_scale=0.0, script=[{"text": "a", "tool_calls": []}])


def test_a_long_tool_result_is_cut_to_its_head_and_tail() -> None:
    from nalar.loop.agentloop import _cut

    assert _cut("short", 10) == "short"
    cut = _cut("a" * 50 + "b" * 50, 20)
    assert cut.startswith("a" * 10) and cut.endswith("b" * 10) and "80 characters cut" in cut
