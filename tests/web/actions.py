"""What a person does on the web client's page, as Playwright steps that wait for the page's
answer (never for a fixed time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.conftest import PASSWORD

# Gitignored: looked at by whoever runs the tests; one is kept as docs/images/web-client.png.
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"


async def register(page: Page, username: str, password: str = PASSWORD) -> None:
    await page.get_by_label("Username", exact=True).fill(username)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Register and sign in").click()
    await expect_live(page)


async def expect_live(page: Page) -> None:
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")


async def join(page: Page, room: str) -> None:
    await page.get_by_label("Join a room by name").fill(room)
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(page.locator("#room-title")).to_have_attribute("data-room", room)


async def say(page: Page, text: str) -> None:
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_label("Message", exact=True).press("Enter")


def messages(page: Page) -> Any:
    return page.locator("#messages")


def alerts(page: Page) -> Any:
    return page.locator("#alert-list")


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def status(page: Page) -> Any:
    return page.locator("#status")


async def dismiss_notices(page: Page) -> None:
    """Dismisses every notice, by its button, as a person tidying up would."""
    notices = alerts(page).get_by_role("button")
    while await notices.count():
        await notices.first.click()
    await expect(alerts(page).locator("li")).to_have_count(0)
