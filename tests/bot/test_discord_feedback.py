"""Questions about a task through the real Discord adapter and the simcord-style fake."""

from __future__ import annotations

from pathlib import Path

from polycrowd.engine.io import load_spec_text
from polycrowd.engine.types import Role
from tests.bot.test_discord import CHOICE_SPEC, ITEMS, discord_world, locales, task_id, texts

__all__ = ["locales"]  # the fixture, used by name


async def test_ask_and_answer_round_trip_on_discord(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        rita = h.add_user("rita")
        await w.grant(rita, Role.REQUESTER)
        engine = w.app.engine
        owner = (await w.user(rita)).id
        project = await engine.create_project(owner, load_spec_text(CHOICE_SPEC, "spec.yaml"))
        await engine.import_items(project.id, ITEMS, name="items.csv")
        await engine.set_state(owner, project.id, "live")
        alice = await w.worker("alice")

        task = await h.slash(alice, "task")
        assert task.response is not None
        aid = task_id(task.response)
        assert ("Ask a question", f"pc:q:{aid}") in task.response.buttons
        hint = await h.click(alice, task.response, f"pc:q:{aid}")
        assert texts(hint.followups) == [
            "Send /ask followed by your question about the current task."
        ]

        asked = await h.slash(alice, "ask", text="Is a <b>tiger</b> a cat?")
        assert texts(asked.messages)[0] == "Your question was sent. The answer will come here."
        await w.app.flush()
        (card,) = [m for m in h.messages_in(h.admin) if "Question 1" in texts([m])[0]]
        assert "Is a <b>tiger</b> a cat?" in texts([card])[0]
        assert "/answer 1" in texts([card])[0]

        answered = await h.slash(rita, "answer", question="1", text="Yes, big cats count.")
        assert texts(answered.messages)[0].startswith("Your answer was sent.")
        await w.app.flush()
        back = [m for m in h.dms_to(alice) if "An answer to your question" in m.content]
        assert back and "Yes, big cats count." in back[-1].content
