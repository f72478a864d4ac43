"""Strict decoding of OpenAI wire data in tests: every field a server sent must be one the `openai`
package's models declare, so the scripted model and the gateway cannot drift from the real protocol."""

from __future__ import annotations

from typing import Any

from openai import BaseModel


def assert_no_unknown_fields(model: Any, where: str = "response") -> None:
    if isinstance(model, BaseModel):
        assert not model.model_extra, f"{where}: unexpected fields {sorted(model.model_extra)}"
        for name in type(model).model_fields:
            assert_no_unknown_fields(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            assert_no_unknown_fields(item, f"{where}[{i}]")
