"""The Engine facade keeps the public API the handlers, bots, CLI and demo call."""

from __future__ import annotations

import inspect

from polycrowd.engine.core import Engine

# Every public Engine coroutine before the split into services: name -> parameters.
API = {
    "user_for": "platform, external_id, display_name='', locale='en', chat_id=''",
    "get_user": "user_id",
    "find_user": "ref",
    "chats_of": "user_id",
    "set_languages": "user_id, langs",
    "toggle_language": "user_id, lang",
    "languages_of": "user_id",
    "set_role": "actor_id, user_id, role",
    "bootstrap_role": "user_id, role",
    "create_project": "owner_id, spec",
    "get_project": "project_id",
    "projects": "owner_id=None",
    "owned_project": "user_id, project_id",
    "import_items": "project_id, source, fmt=None, name='', progress=None, limits=None",
    "set_state": "user_id, project_id, state",
    "status": "project_id",
    "checker_stats": "project_id",
    "current_task": "user_id",
    "next_task": "user_id, *, chat_id='', platform='', project_id=None",
    "paused_projects": "user_id",
    "skip": "user_id, assignment_id",
    "task": "assignment_id",
    "submit": "user_id, assignment_id, payload, seconds=None, *, task=None",
    "open_flags": "limit=10",
    "moderate_answer": "actor_id, answer_id, accept, reason=''",
    "set_status": "actor_id, user_id, status, reason=''",
    "resolve_flag": "actor_id, flag_id, resolution",
    "request_payout": "user_id",
    "pending_payouts": "",
    "decide_payout": "actor_id, payout_id, approve",
    "audit": "",
    "worker_stats": "user_id",
    "my_data": "user_id",
    "forget": "user_id",
    "appeal": "user_id, answer_id, text",
    "decide_appeal": "actor_id, answer_id, uphold",
    "link_code": "user_id, platform",
    "redeem_link": "user_id, code",
    "expire_assignments": "",
    "idle_workers": "idle_s",
    "close_overdue_projects": "",
    "scan_fraud": "project_id, min_common=15",
    "live_projects": "",
    "update_handled": "platform, update_id",
    "mark_update_handled": "platform, update_id",
    "token": "user_id, action, payload",
    "resolve_token": "token_id, user_id",
    "aggregate_project": "project_id, method='auto'",
    "training_examples": "project_id",
    "update_checker_config": "project_id, config",
    "export_rows": "project_id",
    "export": "project_id, out, fmt='csv'",
    "ledger_entries": "user_id=None, limit=50",
}


def _params(name: str) -> str:
    sig = inspect.signature(getattr(Engine, name))
    parts = []
    star = False
    for p in list(sig.parameters.values())[1:]:
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        default = "" if p.default is p.empty else f"={p.default!r}"
        parts.append(p.name + default)
    return ", ".join(parts)


def test_every_public_method_keeps_its_signature() -> None:
    assert {name: _params(name) for name in API} == API


def test_every_public_method_is_a_coroutine() -> None:
    assert all(inspect.iscoroutinefunction(getattr(Engine, name)) for name in API)
