"""Both engines implement app/inference/engine.py's protocols (Engine, Classifier, Detector) with
the same methods and parameters, so the routes can take either: checked on the classes, with
inspect, without loading a model or starting Ray (app/ray_engine.py imports Ray only when it
runs)."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from app import ray_engine
from app.inference import engine, service

PAIRS = [
    (engine.Engine, service.Services),
    (engine.Engine, ray_engine.RayServices),
    (engine.Classifier, service.ModelService),
    (engine.Classifier, ray_engine.RayModelService),
    (engine.Detector, service.DetectorService),
    (engine.Detector, ray_engine.RayDetectorService),
]


def members(protocol) -> dict[str, object]:
    """The protocol's own methods and properties (not object's or Protocol's machinery)."""
    return {name: value for name, value in vars(protocol).items()
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))}


def parameters(function) -> list[tuple[str, object]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize(("protocol", "implementation"), PAIRS, ids=lambda c: c.__name__)
def test_the_engines_implement_the_protocols(protocol, implementation):
    assert protocol in implementation.__mro__  # declared against it (issubclass needs @runtime_checkable)
    for name, member in members(protocol).items():
        own = inspect.getattr_static(implementation, name)
        assert own is not member, f"{implementation.__name__}.{name} is the protocol's stub, not implemented"
        if isinstance(member, property):
            assert isinstance(own, property), f"{implementation.__name__}.{name} is not a property"
            continue
        assert inspect.isfunction(own), f"{implementation.__name__}.{name} is not a method"
        assert inspect.iscoroutinefunction(own) == inspect.iscoroutinefunction(member), \
            f"{implementation.__name__}.{name}: async in one, not in the other"
        assert parameters(own) == parameters(member), f"{implementation.__name__}.{name}{inspect.signature(own)}"


@pytest.mark.parametrize(("protocol", "implementation"), PAIRS, ids=lambda c: c.__name__)
def test_the_engines_have_the_protocols_attributes(protocol, implementation):
    if dataclasses.is_dataclass(implementation):
        fields, init = {f.name for f in dataclasses.fields(implementation)}, ""
    else:
        fields, init = set(), inspect.getsource(implementation.__init__)
    for name in vars(protocol).get("__annotations__", {}):
        assert (name in fields or isinstance(inspect.getattr_static(implementation, name, None), property)
                or f"self.{name} = " in init), f"{implementation.__name__} has no {name}"


def test_every_protocol_member_has_a_one_line_doc():
    for protocol in (engine.Engine, engine.Classifier, engine.Detector):
        for name, member in members(protocol).items():
            doc = (member.fget if isinstance(member, property) else member).__doc__
            assert doc and len(doc.strip().splitlines()) == 1, f"{protocol.__name__}.{name}"
