-- Tokens die when they should: every token carries the account's token generation as it
-- was when the token was issued, and one of an older generation is refused. Disabling an
-- account, resetting its password or rotating its secret raises the generation, so the
-- tokens issued before stay refused even after the account is enabled again.
alter table accounts add column token_generation bigint not null default 0;
