"""The web client through what goes wrong or wears out: its chat instance killed and started
again, its access token expiring, signing out; and used by keyboard alone, on a phone."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.conftest import PASSWORD
from tests.web.actions import (
    alerts,
    expect_live,
    join,
    messages,
    register,
    say,
    screenshot,
    status,
)
from tests.web.conftest import StackFactory

pytestmark = pytest.mark.timeout(120)


async def offsets(page: Page) -> list[int]:
    found = (
        await messages(page)
        .locator("li[data-offset]")
        .evaluate_all("items => items.map(item => Number(item.dataset.offset))")
    )
    return [int(offset) for offset in found]


async def test_the_page_recovers_what_it_missed_while_its_instance_was_restarted(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack()
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    async with alice.expect_response(lambda r: r.url.endswith("/token")) as granted:
        await register(alice, "alice")
    tokens: dict[str, Any] = await (await granted.value).json()
    await register(bob, "bob")
    await join(alice, "lobby")
    await join(bob, "lobby")
    await say(alice, "before the restart")
    await expect(messages(bob)).to_contain_text("before the restart")

    await stack.one.kill()
    await expect(status(alice)).to_have_attribute("data-state", "reconnecting")
    await expect(status(alice)).to_contain_text("Reconnecting (the connection was lost) in")
    for n in (1, 2, 3):
        await say(bob, f"while you were away {n}")
    await expect(messages(bob)).to_contain_text("while you were away 3")
    await screenshot(alice, "restart-reconnecting")

    await stack.one.start()
    await expect(status(alice)).to_have_attribute("data-connects", "2")
    await expect_live(alice)
    for n in (1, 2, 3):
        await expect(messages(alice)).to_contain_text(f"while you were away {n}")
    # Resumed with `since`: every message once, in offset order, nothing announced as lost.
    assert await offsets(alice) == [1, 2, 3, 4]
    await expect(messages(alice).locator("li.notice")).to_have_count(0)
    await say(alice, "back again")
    await expect(messages(bob)).to_contain_text("back again")
    await screenshot(alice, "restart-recovered")

    # Signing out revokes what the page held: its refresh token is refused afterwards.
    await alice.get_by_role("button", name="Sign out").click()
    await expect(alice.get_by_role("heading", name="Sign in or register")).to_be_visible()
    await expect(alerts(alice)).to_contain_text("Signed out: this page's tokens are revoked.")
    await expect(status(alice)).to_have_attribute("data-state", "signed-out")
    await expect(bob.locator("#presence")).not_to_contain_text("alice")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.auth.url}/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        ) as refused,
    ):
        assert refused.status == 400
        assert (await refused.json())["error"] == "invalid_grant"


async def test_a_page_whose_instance_stays_down_moves_to_the_other_and_misses_nothing(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack(failover=True)
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    await register(alice, "alice")
    await register(bob, "bob")
    await join(alice, "lobby")
    await join(bob, "lobby")
    await say(bob, "before")
    await expect(messages(alice)).to_contain_text("before")

    await stack.one.kill()  # and it is not started again
    await say(bob, "while alice moves")
    await expect(status(alice)).to_have_attribute("data-connects", "2")
    await expect(status(alice)).to_have_text(f"Live (on 127.0.0.1:{stack.two.port})")
    await expect(messages(alice)).to_contain_text("while alice moves")
    assert await offsets(alice) == [1, 2]
    await say(alice, "made it across")
    await expect(messages(bob)).to_contain_text("made it across")
    await screenshot(alice, "failover-alice")


async def test_what_history_no_longer_holds_is_announced_as_a_gap(
    web_stack: StackFactory,
) -> None:
    brief = '{"": {}, "brief": {"history_size": 2}}'  # a room that keeps 2 messages
    stack = await web_stack(failover=True, chat={"CHAT_NAMESPACES": brief})
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    await register(alice, "alice")
    await register(bob, "bob")
    await join(alice, "brief:news")
    await join(bob, "brief:news")
    await say(bob, "news 1")
    await expect(messages(alice)).to_contain_text("news 1")
    await stack.one.kill()
    await expect(status(alice)).not_to_have_attribute("data-state", "live")
    for n in range(2, 12):
        await say(bob, f"news {n}")
    await expect(messages(bob)).to_contain_text("news 11")
    await expect(status(alice)).to_have_attribute("data-connects", "2")
    gap = messages(alice).locator("li.notice")
    await expect(gap).to_have_count(1)
    await expect(gap).to_have_text(
        re.compile(r"Messages 2 to \d+ could not be recovered: the room no longer keeps them\.")
    )
    await expect(messages(alice)).to_contain_text("news 11")
    await expect(messages(alice)).not_to_contain_text("news 2")
    await screenshot(alice, "gap-alice")


async def test_without_a_network_the_page_says_offline_and_comes_back_with_it(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack()
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    await register(alice, "alice")
    await register(bob, "bob")
    await join(alice, "lobby")
    await join(bob, "lobby")
    await alice.context.set_offline(True)
    await expect(status(alice)).to_have_attribute("data-state", "offline")
    await expect(status(alice)).to_contain_text("this device has no network")
    await say(bob, "said while alice was offline")
    await expect(messages(bob)).to_contain_text("said while alice was offline")
    await alice.context.set_offline(False)
    await expect(status(alice)).to_have_attribute("data-connects", "2")
    await expect(messages(alice)).to_contain_text("said while alice was offline")


async def test_the_page_refreshes_its_token_and_its_socket_before_they_expire(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack(AUTH_ACCESS_TOKEN_TTL="6")
    alice = await stack.page(stack.one)
    await register(alice, "alice")
    await join(alice, "lobby")
    # Refreshed every 3 s; without it the socket would close (4001) 6 + 5 s after sign-in.
    await expect(status(alice)).to_have_attribute("data-refreshes", "4", timeout=40_000)
    await expect(status(alice)).to_have_attribute("data-connects", "1")
    await expect_live(alice)
    await say(alice, "still here")
    await expect(messages(alice)).to_contain_text("still here")


async def test_keyboard_alone_on_a_phone_sized_screen(web_stack: StackFactory) -> None:
    stack = await web_stack()
    page = await stack.page(stack.two, width=390, height=844)
    keyboard = page.keyboard
    await keyboard.press("Tab")  # the skip link comes first...
    await keyboard.press("Tab")  # ...then the form
    await expect(page.get_by_label("Username", exact=True)).to_be_focused()
    await keyboard.type("dora")
    await keyboard.press("Tab")
    await expect(page.get_by_label("Password", exact=True)).to_be_focused()
    await keyboard.type(PASSWORD)
    await keyboard.press("Enter")  # signs in: dora has no account yet
    await expect(alerts(page)).to_contain_text(
        "Signing in failed: 400 invalid_grant: invalid username or password"
    )
    await keyboard.press("Tab")
    await keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Register and sign in")).to_be_focused()
    await keyboard.press("Enter")
    await expect_live(page)
    await expect(alerts(page).locator("li.error")).to_have_count(0)  # that failure is over
    await expect(page.get_by_label("Join a room by name")).to_be_focused()
    await keyboard.type("lobby")
    await keyboard.press("Enter")
    await expect(page.get_by_label("Message", exact=True)).to_be_focused()
    await keyboard.type("typed, never clicked")
    await keyboard.press("Enter")
    await expect(messages(page)).to_contain_text("typed, never clicked")

    # Readable at a phone's width: nothing wider than the screen, every field labelled.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    unlabelled = await page.evaluate(
        "[...document.querySelectorAll('input')].filter(i => !i.labels.length).map(i => i.id)"
    )
    assert unlabelled == []
    await screenshot(page, "phone-dora")


async def test_signed_out_everywhere_the_page_says_so_and_does_not_retry(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack()
    alice = await stack.page(stack.one)
    async with alice.expect_response(lambda r: r.url.endswith("/token")) as granted:
        await register(alice, "alice")
    access = (await (await granted.value).json())["access_token"]
    await join(alice, "lobby")
    # From another device: "sign me out everywhere" revokes this page's grant too (4003).
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.auth.url}/me/revoke-all",
            json={},
            headers={"Authorization": f"Bearer {access}"},
        ) as revoked,
    ):
        assert revoked.status == 200
    await expect(alerts(alice)).to_contain_text(
        "You were signed out: the credential was revoked or the account disabled."
    )
    await expect(alice.get_by_role("heading", name="Sign in or register")).to_be_visible()
    await expect(status(alice)).to_have_attribute("data-state", "signed-out")
    await expect(status(alice)).to_have_text("Not signed in")
