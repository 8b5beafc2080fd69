"""The dashboard: aiohttp routes over the engine's reads, Jinja2 pages, no front-end build.

Login: the bot's /dashboard command stores a one-time token (hashed, 10 minutes, bound to the
user and their role) and sends ``{POLYCROWD_DASHBOARD_URL}/login?token=...``. Opening it
spends the token and sets a session cookie (HttpOnly, SameSite=Strict, Secure behind https).
Without a valid session every page answers 401 with how to log in. Requesters see their own
projects and the workers on them; moderators and admins see everything, including flags,
appeals and the ledger. Nothing here changes project data: the only writes are the login
tables.

The same application serves ``/metrics`` (Prometheus text) and ``/healthz``; it runs alone
(``polycrowd serve``) or beside the bots (``polycrowd run`` with POLYCROWD_METRICS_PORT).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from polycrowd.engine.core import Engine, EngineError
from polycrowd.engine.services.feedback import Login
from polycrowd.engine.types import Project, Role
from polycrowd.handlers.moderator import FLAG_TITLES
from polycrowd.handlers.worker import money
from polycrowd.i18n import N_, Msg, Translator
from polycrowd.metrics import Metrics, database_collector
from polycrowd.settings import Settings
from polycrowd.web.texts import texts

log = logging.getLogger(__name__)

COOKIE = "pc_session"
DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard")
CHART_TTL = 60.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:;"
    " style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the login link carries its token in the URL
    "Cache-Control": "no-store",
}


@dataclass
class Dashboard:
    engine: Engine
    settings: Settings
    translator: Translator
    metrics: Metrics
    env: Any  # jinja2.Environment
    # (project, language) -> (when drawn, report): charts cost CPU, a reload within a minute
    # reuses them
    reports: dict[tuple[int, str], tuple[float, Any]] = field(default_factory=dict)

    async def report(self, project_id: int, lang: str) -> Any:
        from polycrowd.reports import build_report

        now = time.monotonic()
        cached = self.reports.get((project_id, lang))
        if cached is not None and now - cached[0] < CHART_TTL:
            return cached[1]
        report = await build_report(self.engine, project_id, self.translator, lang)
        self.reports = {k: v for k, v in self.reports.items() if now - v[0] < CHART_TTL}
        self.reports[(project_id, lang)] = (now, report)
        return report

    @property
    def secure(self) -> bool:
        return self.settings.dashboard_url.startswith("https://")


Page = Callable[[web.Request, Dashboard, Login, str], Awaitable[web.StreamResponse]]


def make_app(
    engine: Engine,
    settings: Settings,
    translator: Translator | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    import jinja2

    if metrics is None:
        metrics = Metrics()
        metrics.collect(database_collector(engine))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("polycrowd.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    dash = Dashboard(
        engine,
        settings,
        translator or Translator(default=settings.default_language),
        metrics,
        env,
    )
    app = web.Application(middlewares=[_headers])
    app[DASHBOARD] = dash

    def page(fn: Page, role: Role = Role.REQUESTER) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            login = await _login(request, dash)
            lang = await _lang(dash, login)
            if login is None:
                return _render(dash, "message.html", lang, status=401, kind="login")
            if not login.role.at_least(role):
                return _render(dash, "message.html", lang, status=403, kind="forbidden")
            try:
                return await fn(request, dash, login, lang)
            except EngineError:
                return _render(dash, "message.html", lang, status=404, kind="nothing")

        return handler

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/logout", logout_page)
    app.router.add_get("/", page(projects_page))
    app.router.add_get("/projects/{id:\\d+}", page(project_page))
    app.router.add_get("/workers", page(workers_page))
    app.router.add_get("/flags", page(flags_page, Role.MODERATOR))
    app.router.add_get("/ledger", page(ledger_page, Role.MODERATOR))
    return app


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    if request.path not in ("/metrics", "/healthz"):
        response.headers.update(SECURITY_HEADERS)
    return response


def _dash(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


async def _login(request: web.Request, dash: Dashboard) -> Login | None:
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or len(cookie) > 200:
        return None
    return await dash.engine.dashboard_session(cookie)


async def _lang(dash: Dashboard, login: Login | None) -> str:
    if login is None:
        return dash.translator.normalize(dash.settings.default_language)
    user = await dash.engine.get_user(login.user_id)
    return dash.translator.normalize(user.locale)


def _render(
    dash: Dashboard, template: str, lang: str, status: int = 200, **context: Any
) -> web.Response:
    html = dash.env.get_template(template).render(
        t=texts(dash.translator, lang),
        lang=lang,
        rtl=dash.translator.is_rtl(lang),
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


# Operations -----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    dash = _dash(request)
    try:
        alive = await dash.engine.ping()
    except Exception:
        alive = False
    if not alive:
        return web.json_response({"status": "error", "db": False}, status=503)
    return web.json_response({"status": "ok", "db": True})


async def metrics_page(request: web.Request) -> web.Response:
    body = await _dash(request).metrics.render()
    return web.Response(
        body=body.encode(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


# Login ----------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    dash = _dash(request)
    token = request.query.get("token", "")
    redeemed = await dash.engine.redeem_dashboard_login(token) if 0 < len(token) <= 200 else None
    if redeemed is None:
        lang = dash.translator.normalize(dash.settings.default_language)
        return _render(dash, "message.html", lang, status=403, kind="bad_link")
    session, login = redeemed
    log.info("dashboard login for user %s as %s", login.user_id, login.role.value)
    # A page, not a redirect: a SameSite=Strict cookie set at the end of a navigation that
    # started in a chat app is not sent on the redirect that follows it.
    response = _render(dash, "message.html", await _lang(dash, login), kind="logged_in")
    response.set_cookie(
        COOKIE,
        session,
        httponly=True,
        samesite="Strict",
        secure=dash.secure,
        path="/",
        max_age=12 * 3600,
    )
    return response


async def logout_page(request: web.Request) -> web.Response:
    dash = _dash(request)
    cookie = request.cookies.get(COOKIE, "")
    if cookie:
        await dash.engine.end_dashboard_session(cookie)
    lang = dash.translator.normalize(dash.settings.default_language)
    response = _render(dash, "message.html", lang, status=401, kind="login")
    response.del_cookie(COOKIE, path="/")
    return response


# Pages ----------------------------------------------------------------------------------------


async def _visible_projects(dash: Dashboard, login: Login) -> list[Project]:
    if login.role.at_least(Role.MODERATOR):
        return await dash.engine.projects()
    return await dash.engine.projects(login.user_id)


async def _who(dash: Dashboard, login: Login, lang: str) -> str:
    user = await dash.engine.get_user(login.user_id)
    return dash.translator.render(
        Msg(N_("Logged in as %(who)s (%(role)s)"), {"who": user.pseudonym, "role": login.role}),
        lang,
    )


async def _base(dash: Dashboard, login: Login, lang: str, active: str) -> dict[str, Any]:
    return {
        "who": await _who(dash, login, lang),
        "moderator": login.role.at_least(Role.MODERATOR),
        "active": active,
    }


async def projects_page(
    request: web.Request, dash: Dashboard, login: Login, lang: str
) -> web.Response:
    rows = []
    for p in await _visible_projects(dash, login):
        s = await dash.engine.status(p.id)
        rows.append(
            {
                "id": p.id,
                "name": p.name,
                "state": p.state,
                "progress": s.progress,
                "progress_text": _pct(s.progress),
                "agreement": _pct(s.mean_agreement),
                "alpha": "-" if s.krippendorff_alpha is None else f"{s.krippendorff_alpha:.2f}",
                "answers": s.answers,
                "workers": s.workers,
                "spend": money(s.spend),
            }
        )
    base = await _base(dash, login, lang, "projects")
    return _render(dash, "projects.html", lang, projects=rows, **base)


async def project_page(
    request: web.Request, dash: Dashboard, login: Login, lang: str
) -> web.Response:
    from polycrowd.reports import summary_lines

    pid = int(request.match_info["id"])
    project = await dash.engine.get_project(pid)
    if project.owner_id != login.user_id and not login.role.at_least(Role.MODERATOR):
        return _render(dash, "message.html", lang, status=403, kind="forbidden")
    report = await dash.report(pid, lang)

    charts = [
        {"title": c.title, "src": "data:image/png;base64," + base64.b64encode(c.png).decode()}
        for c in report.charts
    ]
    lines = [dash.translator.render(m, lang) for m in summary_lines(report.data)]
    base = await _base(dash, login, lang, "projects")
    return _render(
        dash,
        "project.html",
        lang,
        project=project,
        progress=report.data.status.progress,
        progress_text=_pct(report.data.status.progress),
        lines=lines,
        charts=charts,
        **base,
    )


async def workers_page(
    request: web.Request, dash: Dashboard, login: Login, lang: str
) -> web.Response:
    ids = None
    if not login.role.at_least(Role.MODERATOR):
        ids = [p.id for p in await dash.engine.projects(login.user_id)]
    rows = [
        {
            "pseudonym": w.pseudonym,
            "answers": w.answers,
            "accepted": w.accepted,
            "rejected": w.rejected,
            "gold": f"{w.gold_correct}/{w.gold_answered}" if w.gold_answered else "-",
            "agreement": _pct(w.agreement),
        }
        for w in await dash.engine.worker_summaries(ids)
    ]
    base = await _base(dash, login, lang, "workers")
    return _render(dash, "workers.html", lang, workers=rows, **base)


async def flags_page(
    request: web.Request, dash: Dashboard, login: Login, lang: str
) -> web.Response:
    flags = []
    for f in await dash.engine.open_flags(limit=200):
        title = FLAG_TITLES.get(f.kind)
        pseudonym = "-"
        if f.user_id is not None:
            pseudonym = (await dash.engine.get_user(f.user_id)).pseudonym
        flags.append(
            {
                "id": f.id,
                "kind": dash.translator.render(Msg(title), lang) if title else f.kind,
                "worker": pseudonym,
                "project": f.project_id or "-",
                "details": ", ".join(f"{k}: {v}" for k, v in f.evidence.items())[:300],
                "when": _fmt_time(f.created_at),
            }
        )
    appeals = [
        {
            "id": a["id"],
            "worker": a["pseudonym"],
            "project": a["project_id"],
            "details": f"{a['payload']} — {a['appeal_text']}"[:300],
            "when": _fmt_time(a["created_at"]),
        }
        for a in await dash.engine.open_appeals()
    ]
    base = await _base(dash, login, lang, "flags")
    return _render(dash, "flags.html", lang, flags=flags, appeals=appeals, **base)


async def ledger_page(
    request: web.Request, dash: Dashboard, login: Login, lang: str
) -> web.Response:
    audit = await dash.engine.audit()
    if audit.ok:
        verdict = Msg(
            N_("Ledger OK: %(n)s entries, total %(total)s."),
            {"n": audit.entries, "total": money(audit.total)},
        )
    else:
        verdict = Msg(N_("Ledger BROKEN: %(problem)s"), {"problem": audit.problem or "?"})
    pseudonyms: dict[int, str] = {}
    entries = []
    for e in await dash.engine.ledger_entries(limit=100):
        if e.user_id not in pseudonyms:
            pseudonyms[e.user_id] = (await dash.engine.get_user(e.user_id)).pseudonym
        entries.append(
            {
                "seq": e.seq,
                "when": _fmt_time(e.ts),
                "worker": pseudonyms[e.user_id],
                "kind": e.kind,
                "amount": money(e.amount),
                "ref": e.ref,
                "hash": e.hash[:12],
            }
        )
    base = await _base(dash, login, lang, "ledger")
    return _render(
        dash,
        "ledger.html",
        lang,
        audit_ok=audit.ok,
        audit=dash.translator.render(verdict, lang),
        entries=entries,
        **base,
    )


# Running --------------------------------------------------------------------------------------


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def serve(
    settings: Settings, host: str, port: int, stop: asyncio.Event | None = None
) -> None:
    """``polycrowd serve``: the dashboard alone, over an existing database."""
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store import open_store
    from polycrowd.models.rules import RulesChecker

    db = await open_store(settings.db, create=False, **settings.store_options())
    engine = Engine(db, RulesChecker(), LanguageDetector("script").detect, clock=time.time)
    runner = await start_site(make_app(engine, settings), host, port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await db.close()
