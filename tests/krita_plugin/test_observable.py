"""Observable properties: the model's state and what widgets and settings bind to."""

from __future__ import annotations

import pytest

from acetate_krita.model import Model
from acetate_krita.observable import Observable, Property


class Form(Observable):
    name = Property("a", persist=True)
    count = Property(0)


def test_a_property_announces_real_changes_only() -> None:
    form, seen = Form(), []
    form.changed("name").connect(seen.append)
    form.name = "a"
    form.name = "b"
    form.name = "b"
    assert seen == ["b"] and form.name == "b" and Form().name == "a"
    form.changed("name").disconnect(seen.append)
    form.name = "c"
    assert seen == ["b"]


def test_each_instance_has_its_own_values_and_signals() -> None:
    first, second, seen = Form(), Form(), []
    first.changed("count").connect(seen.append)
    second.count = 5
    assert seen == [] and first.count == 0


def test_unknown_properties_are_refused() -> None:
    with pytest.raises(AttributeError):
        Form().changed("nope")


def test_persisted_properties_of_the_model() -> None:
    assert Form.persisted() == ["name"]
    persisted = set(Model.persisted())
    assert {"server_url", "token", "model_name", "mode", "batch", "random_seed"} <= persisted
    # Option values (steps, decode…) persist through the model's store, one key per option.
    assert not {"prompt", "busy", "error", "history", "connected"} & persisted
