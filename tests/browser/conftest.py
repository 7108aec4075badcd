"""Browser-test fixtures: Debian's Chromium driven by Playwright (no browser is downloaded),
a real stack (see `stack.py`), screenshots kept under `test-artifacts/browser/`, and axe-core
run inside pages.

The pages' Content-Security-Policy is enforced, as in a customer's browser: a script, style or
connection the CSP refuses logs a console error, and console errors fail the test. axe-core is
evaluated through the DevTools protocol, which a page's CSP does not govern, so the tests never
need to weaken the policy they check.

Every test here is marked `browser` and skipped, with the reason, when /usr/bin/chromium is
missing (`apt-get install -y chromium`; `.ci/run` installs it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.stack import Stack, running_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

_MISSING = (
    None
    if CHROMIUM.exists()
    else (
        "Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium); "
        "the browser tests need it and never download a browser"
    )
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            if _MISSING:
                item.add_marker(pytest.mark.skip(reason=_MISSING))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pytest.importorskip("torch", reason="the tiny student bundle is built with the `train` extra")
    from tests.fixtures.tiny_bundle import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path_factory.mktemp("bundle"))
    with running_stack(tmp_path_factory.mktemp("stack"), bundle.path) as running:
        yield running


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """The one Playwright driver of the session (a thread can run only one)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def context(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium with a fresh, empty user-data dir for the whole session."""
    ctx = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=DESKTOP,
        locale="en-GB",
        timezone_id="UTC",
    )
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """A second headless Chromium whose contexts are separate visitors (a customer and an
    operator, each with their own storage and connections): `browser.new_context()`."""
    chromium = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield chromium
    finally:
        chromium.close()


def watch_errors(tab: Any) -> list[str]:
    """Collect the tab's page errors and console errors (bugs in the screens) into a list."""
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        # A refused request (the stream endpoint's 404 before the fallback, a wrong password)
        # is logged by Chromium itself; the screens handle those. Anything else is a bug.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(f"console: {msg.text}")

    tab.on("console", on_console)
    return errors


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A new tab; the browser's console errors fail the test (they are bugs in the screens)."""
    tab = context.new_page()
    errors = watch_errors(tab)
    yield tab
    tab.close()
    assert not errors, errors


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (shadow DOM too)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    serious = [v for v in results if v["impact"] in ("serious", "critical")]
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [json.dumps(n["target"]) for n in v["nodes"][:5]],
        }
        for v in serious
    ]
