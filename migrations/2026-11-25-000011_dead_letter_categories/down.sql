-- The detailed texts are gone for good; categories stay valid.
SELECT 1;
