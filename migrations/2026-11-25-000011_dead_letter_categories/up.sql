-- dead_letters.reason is what clients see: a category, never PostgreSQL's
-- own text (constraint and trigger names). The detail stays in the dead
-- letter's x-error header, for the admin listing. Rewrite older rows.
UPDATE dead_letters SET reason = CASE
    WHEN reason LIKE 'invalid message:%' THEN 'invalid_message'
    WHEN reason LIKE 'database rejected the message:%' AND attempts <= 1 THEN 'rejected_by_database'
    WHEN reason LIKE 'database rejected the message:%' THEN 'max_attempts'
    ELSE reason
END;
