"""Proves the offline Discord harness against a small self-contained discord.py 2 bot.

The sample bot is deliberately not polycrowd code: it only exercises the discord.py surfaces
bot/discord.py will use (app_commands + Translator, persistent Views and DynamicItems, selects,
modals, defer + followup, ephemeral replies, files, an admin channel, DMs).
"""

from __future__ import annotations

import asyncio
import io
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import discord
import pytest
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from tests.bot.fakediscord import FakeDiscord

# --------------------------------------------------------------------------- sample bot


@dataclass
class Journal:
    """What the sample bot's callbacks saw, shared across bot instances (restarts)."""

    calls: list[tuple[str, int, Any]] = field(default_factory=list)  # (what, bot generation, data)
    generation: int = 0

    def record(self, what: str, bot: discord.Client, data: Any = None) -> None:
        self.calls.append((what, getattr(bot, "generation", -1), data))

    def of(self, what: str) -> list[tuple[int, Any]]:
        return [(gen, data) for w, gen, data in self.calls if w == what]


class SampleTranslator(app_commands.Translator):
    TABLE: ClassVar[dict[tuple[str, discord.Locale], str]] = {
        ("task", discord.Locale.german): "aufgabe",
        ("Get a task", discord.Locale.german): "Eine Aufgabe holen",
        ("Your task", discord.Locale.german): "Deine Aufgabe",
        ("Answer", discord.Locale.german): "Antwort",
    }

    async def translate(
        self,
        string: locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        return self.TABLE.get((string.message, locale))


def journal_of(interaction: discord.Interaction) -> Journal:
    client = interaction.client
    assert isinstance(client, SampleBot)
    return client.journal


class TaskView(discord.ui.View):
    """Persistent: no timeout and fixed custom_ids, re-registered with add_view on start."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Skip", custom_id="task:skip", style=discord.ButtonStyle.secondary)
    async def skip(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        journal_of(interaction).record("skip", interaction.client, interaction.user.id)
        await interaction.response.send_message("skipped", ephemeral=True)

    @discord.ui.button(label="Answer", custom_id="task:answer", style=discord.ButtonStyle.primary)
    async def answer(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.send_modal(AnswerModal(item_id=7))


class ChoiceButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"c:(?P<a>\d+):(?P<k>\w+)"
):
    """A per-assignment button (custom_id carries data), persistent via add_dynamic_items."""

    def __init__(self, assignment: int, key: str) -> None:
        super().__init__(discord.ui.Button(label=key, custom_id=f"c:{assignment}:{key}"))
        self.assignment = assignment
        self.key = key

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ChoiceButton:
        return cls(int(match["a"]), match["k"])

    async def callback(self, interaction: discord.Interaction) -> None:
        journal_of(interaction).record("choice", interaction.client, (self.assignment, self.key))
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send(f"recorded {self.key}", ephemeral=True)


class LabelsView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.select(
        custom_id="task:labels",
        min_values=1,
        max_values=3,
        options=[discord.SelectOption(label=x.title(), value=x) for x in ("cat", "dog", "bird")],
    )
    async def labels(
        self, interaction: discord.Interaction, select: discord.ui.Select[Any]
    ) -> None:
        journal_of(interaction).record("labels", interaction.client, list(select.values))
        await interaction.response.send_message(", ".join(select.values), ephemeral=True)


class AnswerModal(discord.ui.Modal):
    text: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Answer", custom_id="answer:text", style=discord.TextStyle.paragraph
    )

    def __init__(self, item_id: int) -> None:
        super().__init__(title="Answer", custom_id=f"answer:{item_id}")
        self.item_id = item_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        journal_of(interaction).record(
            "modal", interaction.client, (self.item_id, self.text.value)
        )
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)
        client = interaction.client
        assert isinstance(client, SampleBot)
        admin = client.get_channel(client.admin_channel_id)
        assert isinstance(admin, discord.TextChannel)
        await admin.send(
            f"answer from {interaction.user.mention}",
            embed=discord.Embed(title=f"item {self.item_id}", description=self.text.value),
            view=ReviewView(),
        )


class ReviewView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Accept", custom_id="mod:accept", style=discord.ButtonStyle.success)
    async def accept(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        button.disabled = True
        await interaction.response.edit_message(content="accepted", view=self)


class SampleBot(commands.Bot):
    def __init__(self, journal: Journal, admin_channel_id: int) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)
        journal.generation += 1
        self.generation = journal.generation
        self.journal = journal
        self.admin_channel_id = admin_channel_id
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.idle_wait: Any = None  # injected by the test; production: plain await
        self._add_commands()

    async def setup_hook(self) -> None:
        await self.tree.set_translator(SampleTranslator())
        await self.tree.sync()
        self.add_view(TaskView())
        self.add_view(LabelsView())
        self.add_view(ReviewView())
        self.add_dynamic_items(ChoiceButton)
        if self.idle_wait is not None:
            self.loop.create_task(self._outbound())

    async def _outbound(self) -> None:
        """Stand-in for an outbound send queue: a bot-owned task idling on queue.get()."""
        while True:
            text = await self.idle_wait(self.queue.get(), reason="outbound queue idle")
            admin = self.get_channel(self.admin_channel_id)
            assert isinstance(admin, discord.TextChannel)
            await admin.send(text)

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot:
            return
        files = [(a.filename, await a.read()) for a in message.attachments]
        self.journal.record("message", self, (message.content, files))
        if message.guild is None:
            await message.channel.send(f"dm: {message.content}")
        else:
            await message.author.send("let's talk here")

    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name=locale_str("task"), description=locale_str("Get a task"))
        async def task(interaction: discord.Interaction, project: str = "demo") -> None:
            await interaction.response.defer(thinking=True)
            await asyncio.sleep(0)  # real work (db, checker) would happen here
            title = await interaction.translate(locale_str("Your task")) or "Your task"
            embed = discord.Embed(title=title, description=f"project {project}")
            await interaction.followup.send(embed=embed, view=TaskView())
            await interaction.followup.send(
                view=discord.ui.View(timeout=None)
                .add_item(ChoiceButton(41, "yes"))
                .add_item(ChoiceButton(41, "no"))
            )

        @tree.command(description="Multi-label task")
        async def labels(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pick labels", view=LabelsView())

        @tree.command(description="Your balance")
        async def balance(interaction: discord.Interaction) -> None:
            locale = str(interaction.locale)
            await interaction.response.send_message(f"balance 0 ({locale})", ephemeral=True)

        @tree.command(description="Export results")
        async def export(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True)
            data = b"item,label\n1,cat\n"
            await interaction.followup.send(
                "results",
                file=discord.File(io.BytesIO(data), filename="results.csv"),
                ephemeral=True,
            )

        @tree.command(description="Upload items")
        async def upload(interaction: discord.Interaction, items: discord.Attachment) -> None:
            body = await items.read()
            self.journal.record("upload", self, (items.filename, body))
            rows = len(body.splitlines())
            await interaction.response.send_message(f"{rows} rows", ephemeral=True)

        @tree.command(description="Slow without defer")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(5)
            await interaction.response.send_message("too late")

        @tree.command(description="Slow with defer")
        async def slowdefer(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await asyncio.sleep(60)
            await interaction.followup.send("done after a minute")

        @tree.command(description="Long custom_id")
        async def longid(interaction: discord.Interaction) -> None:
            view = discord.ui.View().add_item(discord.ui.Button(label="x", custom_id="x" * 101))
            await interaction.response.send_message("x", view=view)

        @tree.command(description="Queue a notice")
        async def notify(interaction: discord.Interaction, text: str) -> None:
            self.queue.put_nowait(text)
            await interaction.response.send_message("queued", ephemeral=True)


def harness(journal: Journal, **options: Any) -> FakeDiscord:
    return FakeDiscord(lambda h: SampleBot(journal, h.admin.id), **options)


# --------------------------------------------------------------------------- tests


async def test_slash_defers_then_follows_up_with_embed_and_buttons() -> None:
    async with harness(Journal()) as h:
        alice = h.add_user("alice")
        out = await h.slash(alice, "task", project="p1")

        assert out.acknowledged and out.deferred and not out.errors
        assert out.kind == "message"  # the deferral was completed by the first followup
        assert out.response is not None  # the "thinking" message, edited by followup 1
        assert out.response.embed.title == "Your task"
        assert out.response.embed.description == "project p1"
        assert out.response.custom_ids == ("task:skip", "task:answer")
        assert out.response.buttons == (("Skip", "task:skip"), ("Answer", "task:answer"))
        assert out.response.edited and out.response.interaction_user_id == alice.id
        assert [f.custom_ids for f in out.followups] == [("c:41:yes", "c:41:no")]
        assert out.response.channel_name == "general" and not out.response.ephemeral
        callbacks = [r for r in h.requests if r.path.endswith("/callback")]
        assert [(r.json or {}).get("type") for r in callbacks] == [5]  # DEFERRED_CHANNEL_MESSAGE
        assert [s.id for s in h.sent] == [m.id for m in out.messages]


async def test_persistent_view_button_works_before_and_after_restart() -> None:
    journal = Journal()
    async with harness(journal) as h:
        alice = h.add_user("alice")
        task = (await h.slash(alice, "task")).response
        assert task is not None

        first = await h.click(alice, task, "task:skip")
        assert first.response is not None and first.response.content == "skipped"
        assert first.ephemeral

        new_bot = await h.restart()
        assert new_bot is h.bot and isinstance(new_bot, SampleBot) and new_bot.generation == 2

        again = await h.click(alice, task, "task:skip")  # the old message, a new bot instance
        assert again.response is not None and again.response.content == "skipped"
        assert journal.of("skip") == [(1, alice.id), (2, alice.id)]


async def test_dynamic_item_custom_id_is_parsed_after_restart() -> None:
    journal = Journal()
    async with harness(journal) as h:
        bob = h.add_user("bob")
        out = await h.slash(bob, "task")
        await h.restart()

        click = await h.click(bob, out.followups[0], "c:41:no")
        assert click.deferred and click.ephemeral
        # the first followup after a "thinking" defer replaces the loading message
        assert [m.content for m in click.messages] == ["recorded no"] and not click.followups
        assert journal.of("choice") == [(2, (41, "no"))]


async def test_select_menu_with_two_values() -> None:
    journal = Journal()
    async with harness(journal) as h:
        alice = h.add_user("alice")
        menu = (await h.slash(alice, "labels")).response
        assert menu is not None and menu.component("task:labels")["max_values"] == 3

        out = await h.select(alice, menu, "task:labels", ["cat", "bird"])
        assert out.response is not None and out.response.content == "cat, bird"
        assert journal.of("labels") == [(1, ["cat", "bird"])]


async def test_button_opens_modal_and_submit_reaches_on_submit() -> None:
    journal = Journal()
    async with harness(journal) as h:
        alice = h.add_user("alice")
        task = (await h.slash(alice, "task")).response
        assert task is not None

        shown = await h.click(alice, task, "task:answer")
        assert shown.kind == "modal" and shown.modal is not None
        assert shown.modal["custom_id"] == "answer:7" and shown.modal["title"] == "Answer"

        out = await h.submit_modal(alice, "answer:7", {"answer:text": "a black cat"})
        assert out.response is not None and out.response.content == "thanks: a black cat"
        assert journal.of("modal") == [(1, (7, "a black cat"))]


async def test_ephemeral_reply_is_visible_only_to_invoker() -> None:
    async with harness(Journal()) as h:
        alice, bob = h.add_user("alice"), h.add_user("bob")
        out = await h.slash(alice, "balance")

        assert out.ephemeral and out.response is not None and out.response.ephemeral
        assert out.response.visible_to == alice.id
        assert [s.content for s in h.messages_in(h.general, viewer=alice)] == [
            out.response.content
        ]
        assert h.messages_in(h.general, viewer=bob) == []


async def test_file_sent_by_bot_is_recorded_with_bytes() -> None:
    async with harness(Journal()) as h:
        alice = h.add_user("alice")
        out = await h.slash(alice, "export")

        assert out.deferred and out.ephemeral
        (msg,) = out.messages  # the deferred response, completed by the followup
        assert msg.content == "results"
        csv = msg.file("results.csv")
        assert csv.data == b"item,label\n1,cat\n" and csv.content_type == "text/csv"


async def test_attachment_option_uploads_bytes_to_bot() -> None:
    journal = Journal()
    async with harness(journal) as h:
        alice = h.add_user("alice")
        out = await h.slash(alice, "upload", items=("items.csv", b"text\na\nb\n"))
        assert out.response is not None and out.response.content == "3 rows"
        assert journal.of("upload") == [(1, ("items.csv", b"text\na\nb\n"))]


async def test_message_posted_in_admin_channel_and_moderator_clicks_it() -> None:
    async with harness(Journal()) as h:
        alice, mod = h.add_user("alice"), h.add_user("mod")
        task = (await h.slash(alice, "task")).response
        assert task is not None
        await h.click(alice, task, "task:answer")
        out = await h.submit_modal(alice, "answer:7", {"answer:text": "dog"})

        (posted,) = [s for s in out.sent if s.channel_id == h.admin.id]
        assert posted.channel_name == "admin" and posted.content == f"answer from {alice.mention}"
        assert posted.embed.title == "item 7" and posted.embed.description == "dog"
        assert [s.id for s in h.messages_in(h.admin)] == [posted.id]

        review = await h.click(mod, posted, "mod:accept")
        assert review.kind == "update"
        after = h.refresh(posted)
        assert after.content == "accepted" and after.component("mod:accept")["disabled"] is True


async def test_locale_reaches_interaction_and_translator_localizes() -> None:
    async with harness(Journal(), guild_locale="fr") as h:
        anna, bob = h.add_user("anna", locale="de"), h.add_user("bob", locale="en-US")

        synced = h.commands()["task"]
        assert synced["name_localizations"] == {"de": "aufgabe"}
        assert synced["description_localizations"] == {"de": "Eine Aufgabe holen"}

        de = await h.slash(anna, "aufgabe")  # a German client shows and sends the local name
        en = await h.slash(bob, "task")
        assert de.response is not None and de.response.embed.title == "Deine Aufgabe"
        assert en.response is not None and en.response.embed.title == "Your task"

        anna.locale = "pt-BR"
        bal = await h.slash(anna, "balance")
        assert bal.response is not None and bal.response.content == "balance 0 (pt-BR)"


async def test_dms_both_ways_with_user_attachment() -> None:
    journal = Journal()
    async with harness(journal) as h:
        alice = h.add_user("alice")
        out = await h.send_message(alice, None, "hello", files=[("a.txt", b"hi")])
        assert [s.content for s in out.sent] == ["dm: hello"]
        assert out.sent[0].dm_user_id == alice.id and out.sent[0].guild_id is None

        out = await h.send_message(alice, h.general, "in public")
        assert [(s.content, s.dm_user_id) for s in out.sent] == [("let's talk here", alice.id)]
        assert [s.content for s in h.dms_to(alice)] == ["dm: hello", "let's talk here"]
        assert journal.of("message") == [
            (1, ("hello", [("a.txt", b"hi")])),
            (1, ("in public", [])),
        ]


async def test_slash_and_click_inside_a_dm() -> None:
    async with harness(Journal()) as h:
        carol = h.add_user("carol", in_guild=False)
        out = await h.slash(carol, "task", channel=carol.dm)
        assert out.response is not None and out.response.dm_user_id == carol.id
        click = await h.click(carol, out.response, "task:skip")
        assert click.response is not None and click.response.content == "skipped"
        await h.click(carol, out.response, "task:answer")
        done = await h.submit_modal(carol, "answer:7", {"answer:text": "from a DM"})
        assert done.response is not None and done.response.dm_user_id == carol.id
        assert [s.content for s in done.sent if s.channel_id == h.admin.id] == [
            f"answer from {carol.mention}"
        ]


async def test_three_second_rule_in_virtual_time() -> None:
    async with harness(Journal()) as h:
        alice = h.add_user("alice")

        late = await h.slash(alice, "slow")
        assert not late.acknowledged  # still sleeping: virtual time does not pass by itself
        await h.advance_time(5)
        (error,) = h.errors
        assert isinstance(error, app_commands.CommandInvokeError)
        assert isinstance(error.original, discord.NotFound) and error.original.code == 10062

        ok = await h.slash(alice, "slowdefer")
        assert ok.deferred and ok.kind == "deferred"
        await h.advance_time(60)
        done = h.refresh(ok)
        assert done.kind == "message" and done.response is not None
        assert done.response.content == "done after a minute"


async def test_custom_id_over_100_chars_is_rejected() -> None:
    async with harness(Journal()) as h:
        out = await h.slash(h.add_user("alice"), "longid")
        assert not out.acknowledged
        (error,) = out.errors
        assert isinstance(error, app_commands.CommandInvokeError)
        assert isinstance(error.original, discord.HTTPException)
        assert error.original.code == 50035 and "100 or fewer" in str(error.original)
        assert h.errors == [error]  # acknowledge, so teardown does not fail the test


async def test_background_sender_settles_with_idle_wait() -> None:
    async with FakeDiscord(lambda h: _with_idle_wait(h, Journal())) as h:
        out = await h.slash(h.add_user("alice"), "notify", text="worker flagged")
        assert [s.content for s in out.sent if s.channel_id == h.admin.id] == ["worker flagged"]


def _with_idle_wait(h: FakeDiscord, journal: Journal) -> SampleBot:
    bot = SampleBot(journal, h.admin.id)
    bot.idle_wait = h.idle_wait
    return bot


async def test_unknown_custom_id_fails_loudly() -> None:
    import simcord

    async with harness(Journal()) as h:
        alice = h.add_user("alice")
        task = (await h.slash(alice, "task")).response
        assert task is not None
        with pytest.raises(simcord.SetupError, match="No matching component"):
            await h.click(alice, task, "task:nope")
        with pytest.raises(simcord.SetupError, match="no modal"):
            await h.submit_modal(alice, "answer:7", {"answer:text": "x"})


async def test_uninspected_bot_error_fails_at_exit() -> None:
    with pytest.raises(ExceptionGroup, match="did not inspect") as caught:
        async with harness(Journal()) as h:
            await h.slash(h.add_user("alice"), "longid")
    assert caught.group_contains(app_commands.CommandInvokeError)
