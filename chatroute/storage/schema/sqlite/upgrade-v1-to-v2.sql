-- Version 2: actions (/me) beside messages, in kept messages and in room history.

ALTER TABLE messages ADD COLUMN action INTEGER NOT NULL DEFAULT 0;
ALTER TABLE history ADD COLUMN action INTEGER NOT NULL DEFAULT 0;
