ALTER TABLE dead_letters DROP COLUMN kind;
ALTER TABLE messages DROP COLUMN kind;
