-- Kinds of work (issue 17): each stored message and each dead letter
-- records its kind. A constant default adds the column without rewriting
-- the table (PostgreSQL 11+), and every row stored before kinds existed is
-- of the `default` kind (it came through messages.store). The insert of a
-- default-kind message leaves the column to this default: no extra bind
-- parameter on the common path.
ALTER TABLE messages ADD COLUMN kind text NOT NULL DEFAULT 'default';
ALTER TABLE dead_letters ADD COLUMN kind text NOT NULL DEFAULT 'default';
