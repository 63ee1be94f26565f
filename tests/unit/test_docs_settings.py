"""docs/configuration.md names every setting, so a new one cannot go undocumented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from fhir_safety.config import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")


def _setting_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            names += [f"{name}.{inner}" for inner in nested.model_fields]
        else:
            names.append(name)
    return names


@pytest.mark.parametrize("name", _setting_names())
def test_every_setting_is_documented(name: str) -> None:
    group, _, leaf = name.rpartition(".")
    assert f"`{name}`" in DOC or (group and f"`{group}." in DOC and leaf in DOC), name
