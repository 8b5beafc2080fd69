"""Offline harness: a real discord.py 2 bot driven end to end against a fake Discord.

The heavy lifting is done by `simcord <https://simcord.readthedocs.io/>`_ (>= 3.2), which
replaces discord.py's two seams -- ``HTTPClient.request`` (plus the webhook adapter used for
interaction callbacks and followups) and ``ConnectionState.parsers`` (the gateway) -- with an
in-memory Discord.  Everything between the seams (app-command tree, Translator, Views,
persistent views, DynamicItems, Modals, Interaction response/followup) is real discord.py.

This module is a thin layer on top of it that adds what polycrowd's tests need and simcord
lacks or makes awkward:

* the world (guild, ``#general``, ``#admin``) exists *before* the bot is built, so the bot
  factory can read ``h.guild.id`` / ``h.admin.id`` (as polycrowd's settings would);
* a per-user ``locale`` (simcord hard-codes ``interaction.locale == "en-US"``) and the
  guild's preferred locale as ``interaction.guild_locale``;
* ``/localized-name`` invocation resolved through the synced ``name_localizations``;
* a flat, snapshot record (:class:`Sent`) of everything the bot sent -- content, embeds,
  components and their custom_ids, files with their bytes, ephemeral flag, where and to whom;
* an :class:`Outcome` per action with ``deferred`` meaning "was acknowledged with a deferral"
  (simcord's own flag goes back to False once the deferral is completed by a followup);
* ``submit_modal(user, modal_custom_id, values)`` without carrying the result that showed it;
* ``restart()`` building a fresh bot instance from the same factory on the same world.

Usage::

    async with FakeDiscord(lambda h: MyBot(admin_channel_id=h.admin.id)) as h:
        alice = h.add_user("alice", locale="de")
        out = await h.slash(alice, "task")
        assert out.deferred and out.response is not None
        click = await h.click(alice, out.response, "task:skip")
        await h.restart()                       # new bot instance, same messages
        again = await h.click(alice, out.response, "task:skip")

Settling: every action returns only once all bot-owned work is finished or parked on a
recognised wait (``asyncio.sleep`` timers, ``wait_for``, View timeouts).  A bot-owned
background task blocked on something else (``await queue.get()``) makes every action time out
after ``settle_timeout``; wrap such idle waits with :meth:`FakeDiscord.idle_wait` (in
production code inject ``idle_wait`` as a plain ``await``).  ``asyncio.sleep`` in the bot does
*not* pass by itself: call :meth:`FakeDiscord.advance_time` (virtual, instant).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, overload

import discord
import simcord

__all__ = [
    "BotFactory",
    "FakeDiscord",
    "FakeUser",
    "MessageRef",
    "Outcome",
    "Sent",
    "SentFile",
    "iter_components",
]

T = TypeVar("T")
BotFactory: TypeAlias = Callable[["FakeDiscord"], discord.Client]

_EPHEMERAL = 1 << 6
_DEFER_CALLBACK_TYPES = (5, 6)  # DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE
_CALLBACK_PATH = re.compile(r"^/interactions/(\d+)/[^/]+/callback$")


def iter_components(rows: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every component in a message's component tree (rows, V2 containers, accessories)."""
    for component in rows:
        yield component
        children = list(component.get("components") or [])
        for key in ("component", "accessory"):
            child = component.get(key)
            if isinstance(child, Mapping):
                children.append(child)
        yield from iter_components(children)


@dataclass(frozen=True, slots=True)
class SentFile:
    """A file the bot uploaded, with the exact bytes Discord received."""

    filename: str
    data: bytes
    content_type: str
    description: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Sent:
    """Snapshot of one message as Discord stores it (taken when the record was built)."""

    id: int
    channel_id: int
    channel_name: str | None  # None in DMs
    guild_id: int | None
    dm_user_id: int | None  # the DM recipient when the message is in a bot<->user DM
    author_id: int
    from_bot: bool
    content: str
    embeds: tuple[discord.Embed, ...]
    components: tuple[dict[str, Any], ...]  # raw action rows exactly as sent
    files: tuple[SentFile, ...]
    ephemeral: bool
    visible_to: int | None  # ephemeral messages: the only user who can see it
    interaction_id: int | None  # set for interaction responses and followups
    interaction_user_id: int | None  # who triggered that interaction
    edited: bool

    @property
    def custom_ids(self) -> tuple[str, ...]:
        return tuple(
            str(c["custom_id"]) for c in iter_components(self.components) if c.get("custom_id")
        )

    def component(self, custom_id: str) -> dict[str, Any]:
        for c in iter_components(self.components):
            if c.get("custom_id") == custom_id:
                return dict(c)
        raise KeyError(f"no component {custom_id!r} on message {self.id}; have {self.custom_ids}")

    @property
    def buttons(self) -> tuple[tuple[str | None, str | None], ...]:
        """(label, custom_id) of every button; link buttons have custom_id None."""
        return tuple(
            (c.get("label"), c.get("custom_id"))
            for c in iter_components(self.components)
            if c.get("type") == discord.ComponentType.button.value
        )

    @property
    def embed(self) -> discord.Embed:
        """The only embed (fails loudly if there is not exactly one)."""
        if len(self.embeds) != 1:
            raise AssertionError(f"expected exactly one embed, got {len(self.embeds)}")
        return self.embeds[0]

    def file(self, filename: str) -> SentFile:
        for f in self.files:
            if f.filename == filename:
                return f
        raise KeyError(f"no file {filename!r}; have {[f.filename for f in self.files]}")


MessageRef: TypeAlias = Sent | discord.Message | simcord.ResponseMessage


@dataclass(frozen=True, slots=True, eq=False)
class Outcome:
    """What happened during one harness action (snapshot when the action settled)."""

    interaction_id: int | None
    kind: str | None  # message | deferred | deferred_update | update | modal | autocomplete
    acknowledged: bool
    deferred: bool  # acknowledged with a deferral (type 5 or 6), even if completed since
    ephemeral: bool
    response: Sent | None  # the original response (a deferral's loading message, edited later)
    followups: tuple[Sent, ...]
    modal: dict[str, Any] | None  # the modal payload shown to the user, if any
    sent: tuple[Sent, ...]  # every new message the bot created during the action, anywhere
    errors: tuple[BaseException, ...]  # exceptions the bot raised during the action
    raw: simcord.InteractionResult | None = field(default=None, repr=False)

    @property
    def messages(self) -> tuple[Sent, ...]:
        """The response (if it carries a message) followed by the followups."""
        head = (self.response,) if self.response is not None else ()
        return head + self.followups


class FakeUser:
    """A Discord user: a guild member (unless ``in_guild=False``) with a client locale."""

    def __init__(
        self,
        handle: simcord.UserHandle,
        actor: simcord.MemberActor | None,
        locale: str,
    ) -> None:
        self.handle = handle
        self.actor = actor
        self.locale = locale  # mutable: the next interaction carries the new locale

    @property
    def id(self) -> int:
        return self.handle.id

    @property
    def name(self) -> str:
        return self.handle.name

    @property
    def mention(self) -> str:
        return self.handle.mention

    @property
    def dm(self) -> simcord.ChannelHandle:
        return self.handle.dm_channel

    def member_actor(self) -> simcord.MemberActor:
        if self.actor is None:
            raise simcord.SetupError(f"{self.name} is not a member of the guild")
        return self.actor

    def __repr__(self) -> str:
        return f"<FakeUser {self.name} id={self.id} locale={self.locale}>"


class FakeDiscord:
    """One virtual Discord with one guild (``#general`` and an admin channel) and one bot."""

    def __init__(
        self,
        bot_factory: BotFactory,
        *,
        guild_name: str = "polycrowd-test",
        guild_locale: str = "en-US",
        admin_channel: str = "admin",
        channels: Sequence[str] = ("general",),
        strict_sync: bool = True,
        check_errors: bool = True,
        settle_timeout: float = 5.0,
    ) -> None:
        self._factory = bot_factory
        self._guild_name = guild_name
        self._guild_locale = guild_locale
        self._admin_name = admin_channel
        self._channel_names = tuple(channels)
        self._strict_sync = strict_sync
        self._check_errors = check_errors
        self._settle_timeout = settle_timeout
        self._env: simcord.Env | None = None
        self._guild: simcord.GuildHandle | None = None
        self._channels: dict[str, simcord.ChannelHandle] = {}
        self._users: dict[int, FakeUser] = {}
        # (user id, modal custom_id) -> (the result that showed it, shown in a DM)
        self._modals: dict[tuple[int, str], tuple[simcord.InteractionResult, bool]] = {}
        self._last_interaction_id: int | None = None
        self._errors_seen = 0
        self.restarts = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(raise_errors=exc_type is None)

    async def start(self) -> discord.Client:
        if self._env is not None:
            raise RuntimeError("FakeDiscord already started")
        # simcord wants the bot at construction; build the world first with a placeholder so
        # the real bot's factory can read the guild and channel ids, then swap it in.
        env = simcord.Env(
            discord.Client(intents=discord.Intents.default()),
            strict_sync=self._strict_sync,
            check_errors=self._check_errors,
            settle_timeout=self._settle_timeout,
        )
        self._env = env
        self._install_locale_patch()
        guild = env.create_guild(self._guild_name, preferred_locale=self._guild_locale)
        self._guild = guild
        for name in (*self._channel_names, self._admin_name):
            self._channels[name] = guild.create_text_channel(name)
        env.bot = self._factory(self)
        await env.start()
        return env.bot

    async def stop(self, *, raise_errors: bool = True) -> None:
        env = self._env
        if env is None:
            return
        try:
            await env.shutdown()
        finally:
            self._env = None
        unseen = env.errors_since(self._errors_seen)
        if raise_errors and self._check_errors and unseen:
            raise ExceptionGroup(
                f"bot raised {len(unseen)} error(s) the test did not inspect "
                "(read FakeDiscord.errors to acknowledge expected ones)",
                [e if isinstance(e, Exception) else RuntimeError(repr(e)) for e in unseen],
            )

    async def restart(self) -> discord.Client:
        """Replace the bot with a fresh instance from the factory; the world is kept."""
        new_bot = self._factory(self)
        await self.env.restart_bot(new_bot)
        self.restarts += 1
        return new_bot

    # ------------------------------------------------------------------ world

    @property
    def env(self) -> simcord.Env:
        if self._env is None:
            raise RuntimeError("FakeDiscord is not running (use `async with FakeDiscord(...)`)")
        return self._env

    @property
    def bot(self) -> discord.Client:
        return self.env.bot

    @property
    def guild(self) -> simcord.GuildHandle:
        if self._guild is None:
            raise RuntimeError("FakeDiscord is not running")
        return self._guild

    @property
    def general(self) -> simcord.ChannelHandle:
        return self.channel(self._channel_names[0])

    @property
    def admin(self) -> simcord.ChannelHandle:
        return self.channel(self._admin_name)

    def channel(self, name: str) -> simcord.ChannelHandle:
        try:
            return self._channels[name]
        except KeyError:
            raise KeyError(f"no channel #{name}; have {sorted(self._channels)}") from None

    def add_channel(
        self,
        name: str,
        *,
        overwrites: Mapping[Any, discord.PermissionOverwrite] | None = None,
    ) -> simcord.ChannelHandle:
        handle = self.guild.create_text_channel(name, overwrites=dict(overwrites or {}))
        self._channels[name] = handle
        return handle

    def add_user(
        self,
        name: str,
        *,
        locale: str = "en-US",
        in_guild: bool = True,
        roles: Sequence[simcord.RoleHandle] = (),
    ) -> FakeUser:
        handle = self.env.create_user(name)
        actor = self.guild.add_member(handle, roles=roles) if in_guild else None
        user = FakeUser(handle, actor, locale)
        self._users[user.id] = user
        return user

    def dm(self, user: FakeUser) -> simcord.ChannelHandle:
        return user.dm

    # ------------------------------------------------------------------ actions

    async def slash(
        self,
        user: FakeUser,
        name: str,
        /,
        *,
        channel: simcord.ChannelHandle | None = None,
        **options: Any,
    ) -> Outcome:
        """Run ``/name`` (``"group sub"`` for subcommands; a localized name works too).

        Options are Python values; ``discord.Attachment`` options take ``(filename, bytes)``,
        member options take a :class:`FakeUser`.
        """
        channel = channel or self.general
        name = self._canonical_command_name(name, user.locale)
        options = {
            k: (v.member_actor() if isinstance(v, FakeUser) else v) for k, v in options.items()
        }
        if self._is_dm(channel):
            return await self._act(lambda: user.handle.slash(name, **options))
        actor = user.member_actor()
        return await self._act(lambda: actor.slash(channel, name, **options))

    async def click(self, user: FakeUser, message: MessageRef, custom_id: str) -> Outcome:
        ref = self._message_ref(message)
        who: Any = user.handle if self._is_dm_message(ref) else user.member_actor()
        return await self._act(lambda: who.click(ref, custom_id=custom_id))

    async def select(
        self, user: FakeUser, message: MessageRef, custom_id: str, values: Sequence[Any]
    ) -> Outcome:
        ref = self._message_ref(message)
        who: Any = user.handle if self._is_dm_message(ref) else user.member_actor()
        picked = [v.member_actor() if isinstance(v, FakeUser) else v for v in values]
        return await self._act(lambda: who.select(ref, picked, custom_id=custom_id))

    async def submit_modal(
        self, user: FakeUser, custom_id: str, values: Mapping[str, Any]
    ) -> Outcome:
        """Submit the modal ``custom_id`` last shown to ``user``; values by field custom_id."""
        entry = self._modals.get((user.id, custom_id))
        if entry is None:
            open_ids = sorted(cid for uid, cid in self._modals if uid == user.id)
            raise simcord.SetupError(
                f"no modal {custom_id!r} was shown to {user.name}; shown: {open_ids}"
            )
        shown, in_dm = entry
        who: Any = user.handle if in_dm else user.member_actor()
        outcome = await self._act(lambda: who.submit_modal(shown, dict(values)))
        self._modals.pop((user.id, custom_id), None)
        return outcome

    async def send_message(
        self,
        user: FakeUser,
        channel: simcord.ChannelHandle | None,
        content: str = "",
        *,
        files: Sequence[tuple[str, bytes]] = (),
    ) -> Outcome:
        """Post a message as ``user``; ``channel=None`` (or ``user.dm``) means DM the bot."""
        env = self.env
        if channel is None or self._is_dm(channel):
            dm_id = user.dm.id
            attachments = env.backend.store_attachments(dm_id, list(files))
            return await self._act(
                lambda: user.handle.send_dm(content, attachments=attachments), interaction=False
            )
        actor = user.member_actor()
        return await self._act(
            lambda: actor.send(channel, content, attachments=list(files)), interaction=False
        )

    async def advance_time(self, seconds: float) -> None:
        """Move the virtual clock (fires bot sleeps, View timeouts, interaction expiry)."""
        await self.env.advance_time(seconds)

    async def settle(self) -> None:
        await self.env.settle()

    async def idle_wait(self, awaitable: Awaitable[T], *, reason: str = "idle") -> T:
        """Await external input inside bot-owned work without blocking settlement."""
        result: T = await self.env.external_wait(awaitable, reason=reason)
        return result

    @overload
    def refresh(self, item: Sent) -> Sent: ...
    @overload
    def refresh(self, item: Outcome) -> Outcome: ...
    def refresh(self, item: Outcome | Sent) -> Outcome | Sent:
        """A fresh snapshot of a message or an outcome (e.g. after advance_time)."""
        if isinstance(item, Sent):
            stored = self.env.backend.get_message(item.channel_id, item.id)
            return self._snapshot(stored)
        if item.raw is None:
            return item
        return self._outcome(item.raw, item.interaction_id, item.sent, item.errors)

    # ------------------------------------------------------------------ queries

    @property
    def sent(self) -> list[Sent]:
        """Every message the bot has sent (guild channels and DMs), oldest first."""
        return [self._snapshot(m) for m in self._stored_messages() if self._is_bot(m)]

    def messages_in(
        self,
        channel: simcord.ChannelHandle,
        *,
        bot_only: bool = True,
        viewer: FakeUser | None = None,
    ) -> list[Sent]:
        """Messages in a channel, oldest first; ``viewer`` hides others' ephemerals."""
        stored = self.env.backend.messages.get(channel.id, {})
        out = []
        for m in sorted(stored.values(), key=lambda m: m.id):
            if bot_only and not self._is_bot(m):
                continue
            if viewer is not None and not m.visible_to(viewer.id):
                continue
            out.append(self._snapshot(m))
        return out

    def dms_to(self, user: FakeUser) -> list[Sent]:
        """What the bot sent to ``user`` in their DM, oldest first."""
        channel_id = self.env.backend.dm_channels.get(user.id)
        if channel_id is None:
            return []
        return [s for s in self.sent if s.channel_id == channel_id]

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions the bot raised so far; reading them acknowledges them for teardown."""
        self._errors_seen = self.env.error_cursor
        return list(self.env.errors_since(0))

    @property
    def requests(self) -> list[simcord.HttpLogEntry]:
        """Every REST call the bot made (method, path, params, json; file bytes excluded)."""
        return list(self.env.http_requests)

    def transcript(self) -> str:
        return self.env.transcript()

    def commands(self) -> dict[str, dict[str, Any]]:
        """Application commands as synced to Discord (global and guild), by name."""
        out: dict[str, dict[str, Any]] = {}
        for scope in self.env.backend.commands.values():
            for (name, _type), payload in scope.items():
                out[name] = deepcopy(payload)
        return out

    # ------------------------------------------------------------------ internals

    def _install_locale_patch(self) -> None:
        """simcord hard-codes en-US; give each interaction its user's and guild's locale."""
        backend = self.env.backend
        original = backend.emit

        def emit(event: str, payload: Mapping[str, Any]) -> None:
            if event == "INTERACTION_CREATE" and isinstance(payload, dict):
                self._last_interaction_id = int(payload["id"])
                who = payload.get("member", {}).get("user") or payload.get("user") or {}
                user = self._users.get(int(who.get("id", 0)))
                if user is not None:
                    payload["locale"] = user.locale
                if payload.get("guild_id") is not None:
                    guild = backend.guilds.get(int(payload["guild_id"]))
                    if guild is not None:
                        payload["guild_locale"] = guild.preferred_locale
            original(event, payload)

        setattr(backend, "emit", emit)  # noqa: B010 - instance attribute shadows the method

    def _canonical_command_name(self, name: str, locale: str) -> str:
        head, _, rest = name.partition(" ")
        for scope in self.env.backend.commands.values():
            for (canonical, _type), payload in scope.items():
                localized = (payload.get("name_localizations") or {}).get(locale)
                if head not in (canonical, localized):
                    continue
                return f"{canonical} {rest}".strip()
        return name

    async def _act(
        self,
        action: Callable[[], Awaitable[Any]],
        *,
        interaction: bool = True,
    ) -> Outcome:
        env = self.env
        before = {m.id for m in self._stored_messages()}
        error_cursor = env.error_cursor
        self._last_interaction_id = None
        result = await action()
        interaction_id = self._last_interaction_id if interaction else None
        sent = tuple(
            self._snapshot(m)
            for m in self._stored_messages()
            if m.id not in before and self._is_bot(m)
        )
        errors = env.errors_since(error_cursor)
        if not isinstance(result, simcord.InteractionResult):
            return Outcome(None, None, False, False, False, None, (), None, sent, errors)
        return self._outcome(result, interaction_id, sent, errors)

    def _outcome(
        self,
        result: simcord.InteractionResult,
        interaction_id: int | None,
        sent: tuple[Sent, ...],
        errors: tuple[BaseException, ...],
    ) -> Outcome:
        modal = result.modal
        record = None
        if interaction_id is not None:
            record = self.env.backend.interactions.get(interaction_id)
        kind = None
        if record is not None:
            if record.response_kind is not None:
                kind = str(record.response_kind)
            if modal is not None:
                in_dm = record.channel_id in self.env.backend.dm_channels.values()
                self._modals[(record.user_id, str(modal.get("custom_id")))] = (result, in_dm)
        response = result.response
        return Outcome(
            interaction_id=interaction_id,
            kind=kind,
            acknowledged=result.acknowledged,
            deferred=result.deferred or self._was_deferred(interaction_id),
            ephemeral=result.ephemeral,
            response=self._snapshot_ref(response) if response is not None else None,
            followups=tuple(self._snapshot_ref(f) for f in result.followups),
            modal=modal,
            sent=sent,
            errors=errors,
            raw=result,
        )

    def _was_deferred(self, interaction_id: int | None) -> bool:
        if interaction_id is None:
            return False
        for entry in self.env.http_requests:
            match = _CALLBACK_PATH.match(entry.path)
            if match is None or int(match.group(1)) != interaction_id:
                continue
            if isinstance(entry.json, dict) and entry.json.get("type") in _DEFER_CALLBACK_TYPES:
                return True
        return False

    def _stored_messages(self) -> list[Any]:
        backend = self.env.backend
        return sorted(
            (m for per_channel in backend.messages.values() for m in per_channel.values()),
            key=lambda m: m.id,
        )

    def _is_bot(self, stored: Any) -> bool:
        return bool(stored.author_id == self.env.backend.bot_user.id)

    def _is_dm(self, channel: simcord.ChannelHandle) -> bool:
        return channel.id in self.env.backend.dm_channels.values()

    def _is_dm_message(self, ref: simcord.ResponseMessage) -> bool:
        return ref.channel_id in self.env.backend.dm_channels.values()

    def _message_ref(self, message: MessageRef) -> simcord.ResponseMessage:
        """Accept a Sent, a discord.Message or a simcord ResponseMessage."""
        if isinstance(message, simcord.ResponseMessage):
            return message
        if isinstance(message, Sent | discord.Message):
            channel_id = message.channel_id if isinstance(message, Sent) else message.channel.id
            stored = self.env.backend.get_message(channel_id, message.id)
            return simcord.ResponseMessage(self.env, stored)
        raise TypeError(f"not a message: {message!r}")

    def _snapshot_ref(self, ref: simcord.ResponseMessage) -> Sent:
        return self._snapshot(self.env.backend.get_message(ref.channel_id, ref.id))

    def _snapshot(self, stored: Any) -> Sent:
        backend = self.env.backend
        channel = backend.get_channel(stored.channel_id)
        dm_user = next((u for u, c in backend.dm_channels.items() if c == stored.channel_id), None)
        files = tuple(
            SentFile(
                filename=a["filename"],
                data=backend.cdn.get(a["url"]) or b"",
                content_type=a.get("content_type") or "application/octet-stream",
                description=a.get("description"),
            )
            for a in stored.attachments
        )
        meta = stored.interaction_metadata or {}
        ephemeral = bool(stored.flags & _EPHEMERAL)
        meta_user = (meta.get("user") or {}).get("id")
        meta_user_id = int(meta_user) if meta_user is not None else None
        return Sent(
            id=stored.id,
            channel_id=stored.channel_id,
            channel_name=channel.name,
            guild_id=channel.guild_id,
            dm_user_id=dm_user,
            author_id=stored.author_id,
            from_bot=self._is_bot(stored),
            content=stored.content or "",
            embeds=tuple(discord.Embed.from_dict(deepcopy(e)) for e in stored.embeds),
            components=tuple(deepcopy(stored.components)),
            files=files,
            ephemeral=ephemeral,
            visible_to=meta_user_id if ephemeral else None,
            interaction_id=int(meta["id"]) if meta.get("id") is not None else None,
            interaction_user_id=meta_user_id,
            edited=stored.edited_timestamp is not None,
        )
