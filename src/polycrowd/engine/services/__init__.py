"""The engine's services, one room per concern; :class:`polycrowd.engine.core.Engine` is
the facade over them.

users        identities, languages, roles, a worker's own data, linking accounts
projects     specs, item import, launch/pause/finish, status and checker statistics
tasks        matching a worker to the next item, skipping, submitting an answer
scoring      recording an answer: credit, skill, checker drift, item estimate, closing
fraud        per-answer fraud signals and the project-wide fraud scan
moderation   flags, moderator decisions on answers and accounts, appeals
payments     payouts, the ledger view and its audit
maintenance  scheduled jobs, delivered updates, tokens behind buttons
results      batch aggregation, training examples, export
leaderboard  the opt-in leaderboard of a project (pseudonyms only)
state        per-user state that survives a restart: conversations, the current project
"""
