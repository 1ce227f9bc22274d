"""How the app looks and reads: axe-core on every main state, screenshots, phone layout.

Each look (viewport x colour scheme) boots its own page and walks the states a user meets:
boot in progress, ready, a cited answer, the knowledge panel, the citation viewer, diagnostics,
offline. Every state is photographed into test-results/screenshots/ (for people to look at) and
checked by axe-core, and we assert what a user would notice: nothing scrolls sideways, and the
question box and Send stay in view while the conversation is shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import BOOT_TIMEOUT_MS, ROOT

SHOTS = ROOT / "test-results" / "screenshots"
AXE = (ROOT / "node_modules" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Look:
    name: str
    width: int
    height: int
    scheme: str

    @property
    def phone(self) -> bool:
        return self.width < 600


LOOKS = [Look("desktop-light", 1280, 800, "light"), Look("desktop-dark", 1280, 800, "dark"),
         Look("phone-light", 390, 844, "light"), Look("phone-dark", 390, 844, "dark")]


def _axe_problems(page: Page, state: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE)  # evaluated, not a <script> tag: the page's CSP forbids inline code
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{state}: {v['id']} ({v['impact']}) {v['help']} -> "
            f"{[n['target'] for n in v['nodes']][:5]}"
            for v in found if v["impact"] in ("serious", "critical")]


class Walk:
    """One look's page, photographing and checking each state it is led through."""

    def __init__(self, page: Page, look: Look, url: str) -> None:
        self.page = page
        self.look = look
        self.url = url
        self.problems: list[str] = []

    def shot(self, state: str, *, ask_visible: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SHOTS / f"{self.look.name}-{state}.png")
        self.problems += _axe_problems(self.page, state)
        self.assert_fits(state, ask_visible=ask_visible)

    def assert_scheme(self) -> None:
        """The page follows the system's colour scheme: a dark background in dark mode."""
        luminance = self.page.evaluate("""() => {
            const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        }""")
        assert (luminance < 0.2) if self.look.scheme == "dark" else (luminance > 0.8), luminance

    def assert_fits(self, state: str, *, ask_visible: bool) -> None:
        widths = self.page.evaluate(
            "({scroll: document.documentElement.scrollWidth, inner: innerWidth})")
        assert widths["scroll"] <= widths["inner"], f"{state}: the page scrolls sideways {widths}"
        if ask_visible:  # the question box stays at hand wherever the conversation is
            expect(self.page.get_by_role("textbox", name="Ask")).to_be_in_viewport()
            expect(self.page.get_by_role("button", name="Send")).to_be_in_viewport()


@pytest.fixture(params=LOOKS, ids=[look.name for look in LOOKS])
def walk(request: pytest.FixtureRequest, browser: Browser, app_url: str) -> Iterator[Walk]:
    look: Look = request.param
    phone = {"is_mobile": True, "has_touch": True, "device_scale_factor": 2} if look.phone else {}
    context = browser.new_context(viewport={"width": look.width, "height": look.height},
                                  color_scheme=look.scheme, **phone)
    yield Walk(context.new_page(), look, app_url)
    context.close()


def test_every_main_state_passes_axe_and_is_photographed(walk: Walk) -> None:
    page = walk.page
    page.goto(walk.url, wait_until="commit")
    # Boot in progress: the bar counts real bytes, so wait for the first of them.
    page.wait_for_function(
        "() => !document.getElementById('boot').hidden"
        " && document.getElementById('boot-progress').value > 0", timeout=BOOT_TIMEOUT_MS)
    walk.shot("boot")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=BOOT_TIMEOUT_MS)
    expect(page.locator("#engine")).to_have_text("ready")
    walk.assert_scheme()
    walk.shot("ready")

    page.get_by_role("textbox", name="Ask").fill("how does the app keep working offline?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".msg.agent").last
    expect(answer.locator(".sources a").first).to_be_visible()
    walk.shot("answer")

    answer.locator(".sources a").first.click()
    viewer = page.get_by_role("dialog")
    expect(viewer.locator("mark")).to_be_in_viewport()
    expect(viewer.get_by_role("button", name="Close")).to_be_in_viewport()
    walk.shot("viewer", ask_visible=False)
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()

    page.get_by_role("button", name="Knowledge", exact=True).click()
    expect(page.get_by_label("Add documents")).to_be_visible()
    beside = not walk.look.phone  # on a phone the panel sits above the conversation
    walk.shot("knowledge", ask_visible=beside)

    page.locator("#diagnostics summary").click()
    expect(page.locator("#stages tbody tr").first).to_be_visible()
    walk.shot("diagnostics", ask_visible=beside)
    page.get_by_role("button", name="Knowledge", exact=True).click()

    page.context.set_offline(True)
    expect(page.locator("#net")).to_have_text("offline")
    walk.shot("offline")
    page.context.set_offline(False)

    assert not walk.problems, "axe-core found serious or critical violations:\n" + "\n".join(
        walk.problems)
