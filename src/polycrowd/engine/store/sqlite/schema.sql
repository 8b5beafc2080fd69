-- polycrowd schema: what a fresh database gets, in one transaction
-- (engine/store/sqlite/database.py). The base schema comes first, then one section per later
-- version, each opened by a `-- @version N: ...` line and running to the next: an older
-- database runs the sections it lacks (its migrations, engine/store/versions.py), so each
-- version's SQL is written once. A section only adds to what stands above it; a version that
-- also changes the base (3) has those changes here in place and in database.py as ALTERs
-- (tests/engine/store/test_migrations.py compares a migrated database with a fresh one).
-- Counters that the matching query needs (items.filled, items.answered, items.live) are
-- kept in indexed columns by the triggers at the end of the base schema.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    display_name TEXT NOT NULL DEFAULT '',
    pseudonym TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL DEFAULT 'worker'
        CHECK (role IN ('worker', 'requester', 'moderator', 'admin')),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'blocked')),
    status_reason TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT 'en',
    balance INTEGER NOT NULL DEFAULT 0,
    answers INTEGER NOT NULL DEFAULT 0,
    erased INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_active REAL NOT NULL,
    reminded_at REAL
);

CREATE TABLE identities (
    platform TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    chat_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (platform, external_id)
);
CREATE INDEX ix_identities_user ON identities(user_id);

-- Declared and detected languages; `trusted` is what matching reads.
CREATE TABLE user_languages (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    lang TEXT NOT NULL,
    declared INTEGER NOT NULL DEFAULT 0,
    weight REAL NOT NULL DEFAULT 0,
    replies INTEGER NOT NULL DEFAULT 0,
    trusted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, lang)
);
CREATE INDEX ix_user_languages_trusted ON user_languages(user_id, trusted, lang);

-- Beta posterior per worker and skill (alpha = correct + prior, beta = wrong + prior).
CREATE TABLE user_skills (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    skill TEXT NOT NULL,
    alpha REAL NOT NULL DEFAULT 2,
    beta REAL NOT NULL DEFAULT 1,
    mean REAL NOT NULL DEFAULT 0.6667,
    gold_seen INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, skill)
);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER REFERENCES users(id),
    name TEXT NOT NULL,
    task_type TEXT NOT NULL CHECK (task_type IN ('choice', 'multi', 'text', 'spans', 'image')),
    instructions TEXT NOT NULL,        -- JSON {lang: text}
    labels TEXT NOT NULL DEFAULT '[]', -- JSON list
    overlap INTEGER NOT NULL DEFAULT 3,
    overlap_max INTEGER NOT NULL DEFAULT 3,
    confidence_target REAL NOT NULL DEFAULT 0.9,
    reward INTEGER NOT NULL DEFAULT 0, -- minor units per accepted answer
    gold_ratio REAL NOT NULL DEFAULT 0,
    qualification INTEGER NOT NULL DEFAULT 0, -- gold items a new worker answers first
    min_skill REAL NOT NULL DEFAULT 0,
    assignment_ttl REAL NOT NULL DEFAULT 900,
    checker TEXT NOT NULL DEFAULT '{}', -- JSON checker config
    target_lang TEXT,                   -- language text answers must be written in
    deadline REAL,
    state TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'live', 'paused', 'done')),
    created_at REAL NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_projects_state ON projects(state, created_at);

CREATE TABLE project_languages (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    lang TEXT NOT NULL,
    PRIMARY KEY (project_id, lang)
);

CREATE TABLE project_skills (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    skill TEXT NOT NULL,
    min_score REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, skill)
);

CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    external_id TEXT NOT NULL,
    content TEXT NOT NULL,          -- text shown to the worker (or an image/audio reference)
    lang TEXT NOT NULL,
    gold TEXT,                      -- known answer for honeypots, NULL otherwise
    is_gold INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'done')),
    target INTEGER NOT NULL,        -- answers wanted now (overlap, raised up to overlap_max)
    answered INTEGER NOT NULL DEFAULT 0,
    live INTEGER NOT NULL DEFAULT 0, -- issued, unanswered, unexpired assignments
    filled INTEGER NOT NULL DEFAULT 0, -- answered + live, kept by triggers
    confidence REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    -- pick order, lowest first (model in the loop: unsure and disputed items first)
    priority REAL NOT NULL DEFAULT 0,
    UNIQUE (project_id, external_id)
);
-- Matching walks open items of live projects by language, fewest answers first.
CREATE INDEX ix_items_pick ON items(lang, is_gold, priority, filled, confidence, project_id, id)
    WHERE state = 'open';
CREATE INDEX ix_items_project ON items(project_id, state);

CREATE TABLE assignments (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    worker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'issued'
        CHECK (state IN ('issued', 'answered', 'expired', 'skipped', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0,
    chat_id TEXT NOT NULL DEFAULT '',
    platform TEXT NOT NULL DEFAULT '',
    UNIQUE (item_id, worker_id)
);
CREATE INDEX ix_assignments_worker ON assignments(worker_id, state);
CREATE INDEX ix_assignments_expiry ON assignments(expires_at) WHERE state = 'issued';

CREATE TABLE answers (
    id INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignments(id) ON DELETE CASCADE,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    worker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    payload TEXT NOT NULL,
    seconds REAL NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'review')),
    score REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    model_version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'review', 'overruled')),
    correct INTEGER,                -- 1/0 on gold items, NULL otherwise
    appeal TEXT NOT NULL DEFAULT 'none' CHECK (appeal IN ('none', 'open', 'upheld', 'denied')),
    appeal_text TEXT NOT NULL DEFAULT '',
    lang TEXT,                      -- detected language of a text answer
    created_at REAL NOT NULL
);
-- At most one counted (accepted/review) answer per assignment: the credit key.
CREATE UNIQUE INDEX ux_answers_counted ON answers(assignment_id)
    WHERE status IN ('accepted', 'review', 'overruled');
CREATE INDEX ix_answers_item ON answers(item_id, status);
CREATE INDEX ix_answers_worker ON answers(worker_id, created_at);
CREATE INDEX ix_answers_project ON answers(project_id, status);

CREATE TABLE results (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    method TEXT NOT NULL,
    confidence REAL NOT NULL,
    agreement REAL NOT NULL,
    answers INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    model_version TEXT,  -- the project model's version when it voted
    human_confidence REAL  -- the people's confidence without the model
);
CREATE INDEX ix_results_project ON results(project_id);

-- Append-only, hash-chained. Never updated, never deleted (triggers below refuse it).
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL CHECK (kind IN ('credit', 'bonus', 'penalty', 'payout', 'correction')),
    amount INTEGER NOT NULL,
    ref TEXT NOT NULL UNIQUE,       -- idempotency key, e.g. answer:42
    memo TEXT NOT NULL DEFAULT '',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX ix_ledger_user ON ledger(user_id);

CREATE TABLE flags (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- answer_review, fraud_speed, fraud_same_label, ...
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    answer_id INTEGER REFERENCES answers(id) ON DELETE CASCADE,
    project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
    evidence TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    resolution TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
CREATE INDEX ix_flags_open ON flags(state, created_at);
CREATE UNIQUE INDEX ux_flags_open_kind ON flags(kind, user_id, IFNULL(answer_id, 0))
    WHERE state = 'open';

-- How often the checker model's verdict matched the truth (gold items) and the crowd
-- (confident results), per model version.
CREATE TABLE checker_stats (
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0,          -- gold answers judged
    agree INTEGER NOT NULL DEFAULT 0,         -- ... where accept == the answer was right
    result_seen INTEGER NOT NULL DEFAULT 0,   -- answers on confidently aggregated items
    result_agree INTEGER NOT NULL DEFAULT 0,  -- ... where accept == it matched the result
    PRIMARY KEY (project_id, model_version)
);

CREATE TABLE payouts (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    amount INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'approved', 'denied')),
    created_at REAL NOT NULL,
    decided_by INTEGER REFERENCES users(id)
);

-- Delivered platform updates, so a redelivered update is a no-op.
CREATE TABLE processed_updates (
    platform TEXT NOT NULL,
    update_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (platform, update_id)
);

CREATE TABLE link_codes (
    code TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);

-- Short opaque tokens behind chat buttons (Telegram callback_data <= 64 bytes).
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- Counters -------------------------------------------------------------------------------

CREATE TRIGGER tr_assign_insert AFTER INSERT ON assignments WHEN NEW.state = 'issued'
BEGIN
    UPDATE items SET live = live + 1, filled = filled + 1 WHERE id = NEW.item_id;
END;

CREATE TRIGGER tr_assign_close AFTER UPDATE OF state ON assignments
WHEN OLD.state = 'issued' AND NEW.state != 'issued'
BEGIN
    UPDATE items SET
        live = live - 1,
        answered = answered + (NEW.state = 'answered'),
        filled = filled - 1 + (NEW.state = 'answered')
    WHERE id = NEW.item_id;
END;

CREATE TRIGGER tr_ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

CREATE TRIGGER tr_ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

-- @version 2: questions, FAQ, dashboard logins and digest bookkeeping (services/feedback.py).

-- A worker's question about a task, and the requester's (or a moderator's) answer.
CREATE TABLE questions (
    id INTEGER PRIMARY KEY,
    worker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    item_id INTEGER REFERENCES items(id) ON DELETE SET NULL,
    lang TEXT NOT NULL DEFAULT 'en',
    text TEXT NOT NULL,
    answer TEXT,
    answered_by INTEGER REFERENCES users(id),
    created_at REAL NOT NULL,
    answered_at REAL
);
CREATE INDEX ix_questions_worker ON questions(worker_id, created_at);
CREATE INDEX ix_questions_project ON questions(project_id, id);

-- Questions pinned to a project's instructions.
CREATE TABLE faq_entries (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    question_id INTEGER REFERENCES questions(id) ON DELETE SET NULL,
    lang TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- One-time dashboard login links (sha256 of the token; single use) and the sessions they open.
CREATE TABLE dashboard_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE dashboard_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);

-- When a digest last went to whom ("worker"/"<user id>", "moderators"/"all").
CREATE TABLE digest_runs (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (kind, target)
);

-- @version 3: model in the loop (engine/services/prelabels.py): the latest prediction per
-- item and the project model's earned trust (the base tables got items.priority, first in
-- the pick index, and per result the model's part: database.py V3_CHANGES).
CREATE TABLE item_predictions (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    probs TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX ix_item_predictions_project ON item_predictions(project_id);
CREATE TABLE project_models (
    project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    temperature REAL NOT NULL DEFAULT 1,
    annotator TEXT NOT NULL,
    accuracy REAL,
    ece REAL,
    trained_on INTEGER NOT NULL DEFAULT 0,
    confident_at_train INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);

-- @version 4: ledger entries carry a MAC (HMAC under a key kept outside the database; NULL in
-- entries written before); signed checkpoints of the chain head, append-only as well.
ALTER TABLE ledger ADD COLUMN mac TEXT;
CREATE TABLE ledger_checkpoints (
    n INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TRIGGER tr_ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
CREATE TRIGGER tr_ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

-- @version 5: per-user state that must survive a restart (a /newproject conversation, the
-- project a requester's commands act on), as JSON under a key.
CREATE TABLE user_state (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX ix_user_state_key ON user_state(key, updated_at);
