"""The web client end to end: Debian's Chromium on pages of two chat instances (processes of
their own), the real auth service and the suite's Redis. Each browser context is another
person's browser."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import expect

from tests.web.actions import alerts, expect_live, join, messages, register, say, screenshot
from tests.web.conftest import StackFactory

pytestmark = pytest.mark.timeout(120)


async def test_two_people_on_two_instances_chat_and_see_each_other(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack()
    # 60 messages already in the lobby: the page shows the newest 50, then the rest on demand.
    token = await stack.server_token()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for n in range(1, 61):
            async with http.post(
                f"{stack.two.url}/api/rooms/lobby/messages", json={"text": f"earlier {n}"}
            ) as response:
                assert response.status == 201
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    await register(alice, "alice")
    await register(bob, "bob")

    await join(alice, "lobby")
    await expect(messages(alice).locator("li")).to_have_count(50)
    await expect(messages(alice).locator("li").first).to_contain_text("earlier 11")
    await alice.get_by_role("button", name="Load earlier messages").click()
    await expect(messages(alice).locator("li")).to_have_count(60)
    await expect(messages(alice).locator("li").first).to_contain_text("earlier 1")
    await expect(alice.get_by_role("button", name="Load earlier messages")).to_be_hidden()

    await join(bob, "lobby")
    await expect(alice.locator("#presence")).to_contain_text("bob")
    await expect(bob.locator("#presence")).to_contain_text("alice")

    await say(alice, "hello from alice, on instance one")
    await expect(messages(bob)).to_contain_text("hello from alice, on instance one")
    await say(bob, "hi alice, bob here on instance two")
    await expect(messages(alice)).to_contain_text("hi alice, bob here on instance two")

    # A direct message: each starts the DM by the other's name; it is one room.
    await alice.get_by_label("Message a user directly").fill("Bob")
    await alice.get_by_role("button", name="Start").click()
    await expect(alice.locator("#room-title")).to_have_attribute("data-room", "dm:alice,bob")
    await say(alice, "just between us")
    await bob.get_by_label("Message a user directly").fill("alice")
    await bob.get_by_role("button", name="Start").click()
    await expect(messages(bob)).to_contain_text("just between us")  # its history, on opening
    await expect(bob.locator("#presence")).to_contain_text("alice")

    # Back to the lobby; bob leaves it, and alice sees him go.
    await alice.locator("#room-list").get_by_role("button", name="lobby").click()
    await bob.locator("#room-list").get_by_role("button", name="lobby").click()
    await bob.get_by_role("button", name="Leave room").click()
    await expect(alice.locator("#presence")).not_to_contain_text("bob")
    await screenshot(alice, "two-people-alice")
    await expect(alerts(alice).locator("li.error")).to_have_count(0)
    await expect_live(alice)
