"""Moderator cards leave only after the flag's transaction commits: through the whole app
(engine hooks -> App.on_flag -> the admin chat), a rolled-back flag posts nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from polycrowd.bot.app import build_app
from polycrowd.bot.memory import MemoryChat
from polycrowd.engine.domain import FlagKind
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.services.context import raise_flag
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings


async def test_a_rolled_back_flag_posts_no_card_and_a_committed_one_does(tmp_path: Path) -> None:
    settings = Settings().with_db(tmp_path / "cards.db")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    chat = MemoryChat(app.dispatcher, app.translator)
    app.add_adapter(chat)  # type: ignore[arg-type]
    ctx = app.engine._ctx
    try:
        with pytest.raises(RuntimeError):
            async with app.engine.db.transaction() as tx:
                await raise_flag(ctx, tx, FlagKind.CHECKER_DRIFT, None, None, None, {"n": 1})
                raise RuntimeError("the rest of the state change failed")
        await app.flush()
        assert chat.history(chat.admin_chat_id) == []
        assert await app.engine.open_flags() == []

        async with app.engine.db.transaction() as tx:
            await raise_flag(ctx, tx, FlagKind.CHECKER_DRIFT, None, None, None, {"n": 2})
            await app.flush()
            assert chat.history(chat.admin_chat_id) == []  # not while it is open
        await app.flush()
        [card] = chat.history(chat.admin_chat_id)
        [flag] = await app.engine.open_flags()
        assert f"Flag {flag.id}:" in card.text
    finally:
        await app.close()
