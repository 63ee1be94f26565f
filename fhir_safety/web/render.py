"""Render the dashboard pages: one Jinja2 environment over ``templates/``, autoescaped."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "environment", "render_page"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def _when(value: datetime | str | None, zone: str = "Europe/London") -> str:
    """``26 Nov 2026 09:00`` on the trust's wall clock (a datetime or an ISO 8601 string)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if parsed.tzinfo is None:
            return parsed.strftime("%d %b %Y %H:%M")
        value = parsed
    return value.astimezone(ZoneInfo(zone)).strftime("%d %b %Y %H:%M")


def _day(value: date | str | None) -> str:
    """``26 Nov 2026`` for a date or an ISO date string."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.strftime("%d %b %Y")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a missing value is a bug, never an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["percent"] = _percent
    return env


def render_page(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
