"""The dashboard over HTTP: one-time login links, sessions, roles, escaping, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from polycrowd.web.server import COOKIE, make_app

from .conftest import DashWorld

pytest.importorskip("jinja2")


@pytest.fixture
async def client(
    dash_world: DashWorld,
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    app = dash_world.app
    web_app = make_app(app.engine, app.settings, app.translator, app.metrics)
    jar = aiohttp.CookieJar(unsafe=True)  # the test server listens on 127.0.0.1
    async with TestClient(TestServer(web_app), cookie_jar=jar) as c:
        yield c


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def login(client: TestClient, world: DashWorld, user: object) -> None:  # type: ignore[type-arg]
    link = await world.login_link(user)  # type: ignore[arg-type]
    r = await client.get(path_of(link))
    assert r.status == 200, await r.text()


async def test_pages_need_a_session(client: TestClient) -> None:  # type: ignore[type-arg]
    for path in ("/", "/workers", "/flags", "/ledger", "/projects/1"):
        r = await client.get(path)
        assert r.status == 401, path
        assert "Send /dashboard to the bot" in await r.text()
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"


async def test_link_logs_in_once_and_sets_a_strict_http_only_cookie(
    client: TestClient,
    dash_world: DashWorld,  # type: ignore[type-arg]
) -> None:
    link = await dash_world.login_link(dash_world.alice)
    assert link.startswith("http://dashboard.test/login?token=")
    r = await client.get(path_of(link))
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert r.headers["Referrer-Policy"] == "no-referrer"
    home = await client.get("/")
    assert home.status == 200
    # spent: the same link again is refused, and does not end the session it opened
    client.session.cookie_jar.clear()
    again = await client.get(path_of(link))
    assert again.status == 403 and "not valid any more" in await again.text()
    assert (await client.get("/")).status == 401


async def test_expired_link_is_refused(
    client: TestClient,
    dash_world: DashWorld,  # type: ignore[type-arg]
) -> None:
    link = await dash_world.login_link(dash_world.alice)
    dash_world.clock.advance(601)
    assert (await client.get(path_of(link))).status == 403
    assert (await client.get("/")).status == 401


async def test_requester_sees_only_their_projects(
    client: TestClient,
    dash_world: DashWorld,  # type: ignore[type-arg]
) -> None:
    await login(client, dash_world, dash_world.alice)
    alice_pid = dash_world.projects["Pets <b>of Alice</b>"]
    bob_pid = dash_world.projects["Bob's pets"]
    home = await (await client.get("/")).text()
    assert "Pets &lt;b&gt;of Alice&lt;/b&gt;" in home and "<b>of Alice" not in home
    assert "Bob&#39;s pets" not in home
    own = await client.get(f"/projects/{alice_pid}")
    assert own.status == 200
    body = await own.text()
    assert body.count("data:image/png;base64,") >= 4 and "Progress over time" in body
    other = await client.get(f"/projects/{bob_pid}")
    assert other.status == 403 and "not allowed" in await other.text()
    assert (await client.get("/flags")).status == 403
    assert (await client.get("/ledger")).status == 403
    assert (await client.get("/projects/999")).status == 404
    workers = await (await client.get("/workers")).text()
    assert "w-" in workers and "worker0" not in workers  # pseudonyms only


async def test_moderator_pages_and_language(
    client: TestClient,
    dash_world: DashWorld,  # type: ignore[type-arg]
) -> None:
    await login(client, dash_world, dash_world.moderator)
    home = await (await client.get("/")).text()
    assert "Bob&#39;s pets" in home and "Pets &lt;b&gt;of Alice" in home
    flags = await (await client.get("/flags")).text()
    assert "I am sure it was a dog" in flags
    ledger = await (await client.get("/ledger")).text()
    assert "Ledger OK:" in ledger and "credit:p" in ledger
    # Bob reads Spanish
    client.session.cookie_jar.clear()
    await login(client, dash_world, dash_world.bob)
    assert "Proyectos" in await (await client.get("/")).text()


async def test_metrics_parse_as_prometheus_text(
    client: TestClient,
    dash_world: DashWorld,  # type: ignore[type-arg]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    r = await client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    answers = {s.labels["status"]: s.value for s in families["polycrowd_answers"].samples}
    assert answers["accepted"] > 10
    verdicts = families["polycrowd_checker_verdicts"].samples
    assert sum(s.value for s in verdicts) >= answers["accepted"]
    hist = families["polycrowd_checker_seconds"]
    assert hist.type == "histogram"
    count = next(s.value for s in hist.samples if s.name.endswith("_count"))
    assert count == sum(s.value for s in verdicts)
    assert next(iter(families["polycrowd_picks"].samples)).value >= answers["accepted"]
    assert "polycrowd_outbound_queue_depth" in families
    assert next(iter(families["polycrowd_credits"].samples)).value > 0
