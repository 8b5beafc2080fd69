"""Results of free-text items: the medoid answer, lexical or by a checker's embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from polycrowd.engine.checking import CheckRequest, Embedder, Verdict, embeddings
from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.results import lexical_similarity, medoid, text_medoid
from polycrowd.engine.store import Database
from polycrowd.engine.types import TaskType
from polycrowd.models.rules import RulesChecker

from ..conftest import FakeClock, choice_spec


def test_medoid_is_the_row_closest_to_the_others() -> None:
    sim = [[1.0, 0.2, 0.9], [0.2, 1.0, 0.4], [0.9, 0.4, 1.0]]
    assert medoid(sim) == (2, pytest.approx(0.65))
    assert medoid([[1.0]]) == (0, 1.0)
    assert medoid([[1.0, 0.5], [0.5, 1.0]])[0] == 0  # a tie: the first
    with pytest.raises(ValueError):
        medoid([])


def test_lexical_similarity() -> None:
    assert lexical_similarity("The cat, sat.", "the cat sat") == 1.0
    assert 0.0 < lexical_similarity("the cat sat", "the cat sits") < 1.0
    assert lexical_similarity("abc", "xyz") == 0.0
    assert lexical_similarity("", "") == 1.0


def test_text_medoid_lexical_and_by_embeddings() -> None:
    answers = ["the cat is on the mat", "el gato está en la alfombra", "a cat is on the mat"]
    lexical = text_medoid(answers)
    assert lexical.method == "medoid-lexical" and lexical.index in (0, 2)
    # embeddings put the Spanish translation between the two English wordings
    vectors = [[1.0, 0.0], [0.7071, 0.7071], [0.0, 1.0]]
    semantic = text_medoid(answers, vectors)
    assert semantic.method == "medoid-embedding"
    assert (semantic.index, semantic.label) == (1, answers[1])
    assert semantic.agreement == pytest.approx(0.7071)
    assert text_medoid([" only one "]).label == "only one"
    assert text_medoid(answers, vectors[:2]).method == "medoid-lexical"  # wrong count
    with pytest.raises(ValueError):
        text_medoid([])


class VectorChecker:
    """Rules for the verdicts and fixed unit vectors for the embeddings (an Embedder)."""

    def __init__(self, vectors: Mapping[str, list[float]]) -> None:
        self.rules = RulesChecker()
        self.vectors = vectors

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        return await self.rules.check(batch)

    async def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        return [self.vectors[t] for t in texts]


class BrokenEmbedder(VectorChecker):
    async def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        raise RuntimeError("no model")


async def test_embeddings_helper() -> None:
    assert isinstance(VectorChecker({}), Embedder)
    assert not isinstance(RulesChecker(), Embedder)
    assert await embeddings(RulesChecker(), ["a"]) is None
    assert await embeddings(VectorChecker({"a": [1.0]}), ["a"]) == [[1.0]]
    assert await embeddings(BrokenEmbedder({}), ["a"]) is None
    assert await embeddings(VectorChecker({}), []) is None


ANSWERS = {
    "the cat is on the mat": [1.0, 0.0],
    "el gato está en la alfombra": [0.7071, 0.7071],
    "a cat is lying on the mat": [0.0, 1.0],
}


@pytest.mark.parametrize("with_model", [False, True])
async def test_text_results_are_the_medoid(
    db: Database, clock: FakeClock, with_model: bool
) -> None:
    checker = VectorChecker(ANSWERS) if with_model else RulesChecker()
    engine = Engine(db, checker, LanguageDetector("script").detect, clock=clock)
    spec = choice_spec(task_type=TaskType.TEXT, labels=(), name="describe")
    project = await engine.create_project(None, spec)
    await engine.import_items(project.id, b"id,text\n1,a cat on a mat\n", name="i.csv")
    await engine.set_state(None, project.id, "live")
    for n, answer in enumerate(ANSWERS):
        user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", "en")
        task = await engine.next_task(user.id)
        assert task is not None
        clock.advance(30)
        result = await engine.submit(user.id, task.assignment.id, answer)
        assert result.verdict.accepted
    [online] = await engine.export_rows(project.id)
    assert online["label"] == "the cat is on the mat"  # online: the lexical medoid
    out = await engine.aggregate_project(project.id)
    assert out == {
        "method": "medoid-embedding" if with_model else "medoid-lexical",
        "items": 1,
    }
    [row] = await engine.export_rows(project.id)
    expected = "el gato está en la alfombra" if with_model else "the cat is on the mat"
    assert (row["label"], row["method"]) == (expected, out["method"])
