"""The web client end to end: Debian's Chromium on pages of two chat instances (processes of
their own), the real auth service and the suite's Redis. Each browser context is another
person's browser."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.web.actions import (
    alerts,
    dismiss_notices,
    expect_live,
    join,
    messages,
    register,
    say,
    screenshot,
)
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
    earlier = alice.get_by_role("button", name="Load earlier messages", exact=True)
    await earlier.click()
    await expect(messages(alice).locator("li")).to_have_count(60)
    await expect(messages(alice).locator("li").first).to_contain_text("earlier 1")
    await expect(earlier).to_be_hidden()

    await join(bob, "lobby")
    await expect(alice.locator("#presence")).to_contain_text("bob")
    await expect(bob.locator("#presence")).to_contain_text("alice")

    await say(alice, "hello from alice, on instance one")
    await expect(messages(bob)).to_contain_text("hello from alice, on instance one")
    await say(bob, "hi alice, bob here on instance two")
    await expect(messages(alice)).to_contain_text("hi alice, bob here on instance two")

    # A direct message: each starts the DM by the other's name; it is one room.
    await alice.get_by_label("Message a user directly").fill("Bob")
    await alice.get_by_role("button", name="Start", exact=True).click()
    await expect(alice.locator("#room-title")).to_have_attribute("data-room", "dm:alice,bob")
    await say(alice, "just between us")
    await bob.get_by_label("Message a user directly").fill("alice")
    await bob.get_by_role("button", name="Start", exact=True).click()
    await expect(messages(bob)).to_contain_text("just between us")  # its history, on opening
    await expect(bob.locator("#presence")).to_contain_text("alice")

    # Back to the lobby; bob leaves it, and alice sees him go.
    await alice.locator("#room-list").get_by_role("button", name="lobby").click()
    await bob.locator("#room-list").get_by_role("button", name="lobby").click()
    await bob.get_by_role("button", name="Leave room", exact=True).click()
    await expect(alice.locator("#presence")).not_to_contain_text("bob")
    await screenshot(alice, "two-people-alice")
    await expect(alerts(alice).locator("li.error")).to_have_count(0)
    await expect_live(alice)


async def test_a_private_room_admits_whom_its_owner_invites_and_refuses_a_third(
    web_stack: StackFactory,
) -> None:
    stack = await web_stack()
    alice = await stack.page(stack.one)
    bob = await stack.page(stack.two)
    carol = await stack.page(stack.two)
    for page, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        await register(page, name)
    await join(alice, "lobby")
    await alice.get_by_label("Message a user directly").fill("carol")
    await alice.get_by_role("button", name="Start", exact=True).click()

    await alice.get_by_label("New private room").fill("plans")
    await alice.get_by_role("button", name="Create", exact=True).click()
    await expect(alice.locator("#room-title")).to_have_attribute("data-room", "private:plans")
    await alice.get_by_label("Invite by username").fill("bob")
    await alice.get_by_role("button", name="Invite", exact=True).click()
    await expect(alerts(alice)).to_contain_text("Invited bob to private:plans")
    await expect(alice.locator("#member-list li")).to_have_text(["alice (owner)", "bob"])

    await join(bob, "private:plans")
    await expect(bob.locator("#member-list li")).to_have_text(["alice (owner)", "bob"])
    await expect(bob.get_by_label("Invite by username")).to_be_hidden()  # the owner's to do
    await say(bob, "thanks for the invitation")
    await expect(messages(alice)).to_contain_text("thanks for the invitation")
    await say(alice, "welcome, bob")
    await expect(messages(bob)).to_contain_text("welcome, bob")
    await expect(alice.locator("#presence")).to_contain_text("bob")
    await say(bob, "shall we draft the launch plan here?")
    await say(alice, "yes: only the two of us can read this room")
    await expect(messages(alice)).to_contain_text("only the two of us")
    await dismiss_notices(alice)
    await screenshot(alice, "web-client")  # docs/images/web-client.png

    # carol was not invited: the page says the server's refusal plainly and keeps no room.
    await carol.get_by_label("Join a room by name").fill("private:plans")
    await carol.get_by_role("button", name="Join", exact=True).click()
    await expect(alerts(carol)).to_contain_text("Joining private:plans was refused: forbidden")
    await expect(carol.locator("#room-list")).not_to_contain_text("private:plans")
    await screenshot(carol, "private-room-refused-carol")

    # Removed, bob's page forgets the room and says why.
    await alice.get_by_label("Remove by username").fill("bob")
    await alice.get_by_role("button", name="Remove", exact=True).click()
    await expect(alerts(bob)).to_contain_text("You were removed from private:plans")
    await expect(bob.locator("#room-list")).not_to_contain_text("private:plans")
    await expect(messages(bob)).not_to_contain_text("welcome, bob")
    await expect(alice.locator("#presence")).not_to_contain_text("bob")
    await expect(alice.locator("#member-list li")).to_have_text(["alice (owner)"])
    await screenshot(alice, "private-room-alice")


async def test_http_errors_of_the_api_are_shown_plainly(web_stack: StackFactory) -> None:
    stack = await web_stack()
    alice = await stack.page(stack.one)
    await register(alice, "alice")
    await alice.get_by_label("New private room").fill("plans")
    await alice.get_by_role("button", name="Create", exact=True).click()
    await expect(alice.locator("#room-title")).to_have_attribute("data-room", "private:plans")
    await alice.get_by_label("Invite by username").fill("nobody")
    await alice.get_by_role("button", name="Invite", exact=True).click()
    await expect(alerts(alice)).to_contain_text(
        "Inviting nobody to private:plans failed: 404 not_found: no user of that name"
    )
    await alice.get_by_label("New private room").fill("plans")
    await alice.get_by_role("button", name="Create", exact=True).click()
    await expect(alerts(alice)).to_contain_text(
        "Creating private:plans failed: 409 room_exists: a room of that name exists"
    )
    await alice.get_by_label("Join a room by name").fill("no such namespace:x")
    await alice.get_by_role("button", name="Join", exact=True).click()
    await expect(alerts(alice)).to_contain_text('"no such namespace:x" is not a room name')
    await join_refused(alice, "nowhere:x", "unknown_namespace")


async def join_refused(page: Page, room: str, code: str) -> None:
    await page.get_by_label("Join a room by name").fill(room)
    await page.get_by_role("button", name="Join", exact=True).click()
    await expect(alerts(page)).to_contain_text(f"Joining {room} was refused: {code}")
