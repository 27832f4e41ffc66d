-- chatroute's schema, version 2, for a new database.
-- Names are compared ignoring ASCII case: each *_key column holds the folded
-- form (chatroute.storage.name_key), the column beside it the name as given.

CREATE TABLE version
(
    version INTEGER NOT NULL
);

CREATE TABLE accounts
(
    name_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL
);

-- Direct messages kept for offline accounts until delivered.
-- AUTOINCREMENT: an id is never reused, so deleting delivered ids can never
-- remove a newer message.
CREATE TABLE messages
(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient_key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at REAL NOT NULL,
    -- 1 for an action (/me), 0 for a message.
    action INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_recipient ON messages (recipient_key, id);

CREATE TABLE history
(
    id INTEGER PRIMARY KEY,
    room_key TEXT NOT NULL,
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at REAL NOT NULL,
    action INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX history_by_room ON history (room_key, id);
