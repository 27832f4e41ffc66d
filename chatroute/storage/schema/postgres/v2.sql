-- chatroute's schema, version 2, for a new PostgreSQL database: the tables
-- of schema/sqlite/v2.sql in PostgreSQL's types. (Version 2 is the first
-- that chatroute keeps in PostgreSQL, so there is no upgrade to it here.)
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
-- An identity column draws from a sequence, which never hands out a value
-- twice, so deleting delivered ids can never remove a newer message.
CREATE TABLE messages
(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient_key TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    -- POSIX seconds; REAL would be single precision here.
    sent_at DOUBLE PRECISION NOT NULL,
    -- An action (/me) rather than a message.
    action BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX messages_by_recipient ON messages (recipient_key, id);

CREATE TABLE history
(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_key TEXT NOT NULL,
    room TEXT NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    action BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX history_by_room ON history (room_key, id);
