"""Every word the dashboard shows, as gettext message ids (templates read ``t.KEY``)."""

from __future__ import annotations

from polycrowd.i18n import N_, Msg, Translator

TEXTS = {
    "title": N_("polycrowd dashboard"),
    "projects": N_("Projects"),
    "workers": N_("Workers"),
    "flags": N_("Flags and appeals"),
    "ledger": N_("Ledger"),
    "logout": N_("Log out"),
    "project": N_("Project"),
    "state": N_("State"),
    "progress": N_("Progress"),
    "agreement": N_("Agreement"),
    "alpha": N_("Krippendorff's α"),
    "answers": N_("Answers"),
    "spend": N_("Spend"),
    "pseudonym": N_("Pseudonym"),
    "accepted": N_("Accepted"),
    "rejected": N_("Rejected"),
    "gold": N_("Check questions right"),
    "kind": N_("Kind"),
    "worker": N_("Worker"),
    "when": N_("When"),
    "details": N_("Details"),
    "appeals": N_("Appeals"),
    "amount": N_("Amount"),
    "reference": N_("Reference"),
    "nothing": N_("Nothing here yet."),
    "charts": N_("Charts"),
    "no_charts": N_("No answers yet, so no charts."),
    "login_needed": N_("You are not logged in."),
    "login_how": N_(
        "Send /dashboard to the bot in Telegram or Discord and open the link it sends you."
    ),
    "bad_link": N_("This link is not valid any more. Links work once, for 10 minutes."),
    "forbidden": N_("You are not allowed to see this page."),
    "logged_in": N_("You are logged in."),
    "open": N_("Open the dashboard"),
    "signed_as": N_("Logged in as %(who)s (%(role)s)"),
}


def texts(translator: Translator, lang: str) -> dict[str, str]:
    return {k: translator.render(Msg(v), lang) for k, v in TEXTS.items() if "%(" not in v}
