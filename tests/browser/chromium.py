"""Debian's Chromium under Playwright, launched the one way this machine allows.

Never `playwright install`: the browser comes from Debian (scripts/install-system). The
flags keep Chromium off the network (this machine has none) and out of first-run work.
A browser test never passes by skipping: a missing Chromium fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

__all__ = ["SCREENSHOTS", "chromium_context"]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextmanager
def chromium_context(profile: Path, **options: Any) -> Iterator[Any]:
    """A persistent Chromium context with a fresh profile; ``options`` go to Playwright."""
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is not installed (apt-get install chromium)", pytrace=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS, **options
        )
        try:
            yield context
        finally:
            context.close()
