-- The run queue: harnesses (service accounts with `runs:execute`) claim queued runs of
-- their institute and hold them under a lease they renew; a lease left to expire puts
-- the run back in the queue.

alter table service_credentials drop constraint service_credentials_scopes;
alter table service_credentials add constraint service_credentials_scopes check (
    scopes <@ array['protocols:read', 'exercises:read', 'runs:read', 'runs:write',
                    'runs:execute', 'results:read', 'results:write']::text[]);

alter table runs add column lease_holder uuid references accounts (id);
alter table runs add column lease_expires_at timestamptz;
alter table runs add constraint runs_lease_whole
    check ((lease_holder is null) = (lease_expires_at is null));
-- What a claim looks through: the open runs of an institute, oldest first.
create index runs_claimable on runs (institute_id, created_at, id)
    where status in ('queued', 'running');
