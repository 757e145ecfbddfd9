-- Accounts, their credentials and roles, exchanges of personnel, and token signing keys.

-- Lets an exclusion constraint compare uuids and text with `=` beside ranges with `&&`.
create extension if not exists btree_gist;

create table accounts (
    id                uuid primary key,
    kind              text not null,
    email             text,
    display_name      text not null,
    home_institute_id uuid not null references institutes (id),
    status            text not null default 'active',
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint accounts_kind check (kind in ('person', 'service')),
    constraint accounts_status check (status in ('active', 'disabled')),
    -- Persons log in with an e-mail address; service accounts with their id.
    constraint accounts_person_has_email check ((kind = 'person') = (email is not null)),
    constraint accounts_email_length check (char_length(email) <= 254),
    constraint accounts_display_name_length check (char_length(display_name) between 1 and 200)
);
create unique index accounts_email_key on accounts (lower(email));
create index accounts_by_home on accounts (home_institute_id, id);

create table password_credentials (
    account_id  uuid primary key references accounts (id) on delete cascade,
    hash        text not null,
    -- Set by a reset: the one-time password must be replaced before anything else.
    must_change boolean not null default false,
    updated_at  timestamptz not null default now()
);

create table service_credentials (
    account_id  uuid primary key references accounts (id) on delete cascade,
    secret_hash text not null,
    scopes      text[] not null,
    rotated_at  timestamptz not null default now(),
    constraint service_credentials_scopes check (
        scopes <@ array['protocols:read', 'exercises:read', 'runs:read', 'runs:write',
                        'results:read', 'results:write']::text[])
);

create table memberships (
    id           uuid primary key,
    account_id   uuid not null references accounts (id),
    institute_id uuid not null references institutes (id),
    role         text not null,
    valid_from   timestamptz not null,
    valid_until  timestamptz,
    granted_by   uuid references accounts (id),
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz,
    revoked_by   uuid references accounts (id),
    constraint memberships_role check (role in ('admin', 'author', 'reviewer', 'evaluator', 'viewer')),
    constraint memberships_window check (valid_until is null or valid_until > valid_from),
    -- One account holds one role at one institute through at most one window at a time.
    constraint memberships_no_overlap exclude using gist (
        account_id with =, institute_id with =, role with =,
        tstzrange(valid_from, valid_until) with &&
    ) where (revoked_at is null)
);
create index memberships_by_account on memberships (account_id);

create table exchanges (
    id                       uuid primary key,
    account_id               uuid not null references accounts (id),
    home_institute_id        uuid not null references institutes (id),
    host_institute_id        uuid not null references institutes (id),
    roles                    text[] not null,
    starts_at                timestamptz not null,
    ends_at                  timestamptz not null,
    status                   text not null default 'proposed',
    proposed_by              uuid not null references accounts (id),
    proposed_by_institute_id uuid not null references institutes (id),
    decided_by               uuid references accounts (id),
    decided_at               timestamptz,
    ended_by                 uuid references accounts (id),
    ended_at                 timestamptz,
    created_at               timestamptz not null default now(),
    updated_at               timestamptz not null default now(),
    constraint exchanges_two_institutes check (home_institute_id <> host_institute_id),
    constraint exchanges_window check (ends_at > starts_at),
    constraint exchanges_status check (status in ('proposed', 'approved', 'rejected', 'ended')),
    constraint exchanges_roles check (
        cardinality(roles) between 1 and 5
        and roles <@ array['admin', 'author', 'reviewer', 'evaluator', 'viewer']::text[]),
    -- One person is exchanged to one host through at most one window at a time.
    constraint exchanges_no_overlap exclude using gist (
        account_id with =, host_institute_id with =, tstzrange(starts_at, ends_at) with &&
    ) where (status in ('proposed', 'approved'))
);
create index exchanges_by_account on exchanges (account_id);
create index exchanges_by_home on exchanges (home_institute_id);
create index exchanges_by_host on exchanges (host_institute_id);

create table signing_keys (
    kid         text primary key,
    -- Ed25519, PKCS#8 DER.
    private_key bytea not null,
    public_key  bytea not null,
    created_at  timestamptz not null default now(),
    -- Set when a newer key takes over; the key still verifies the tokens it signed
    -- until they expire.
    retired_at  timestamptz
);

-- Failed logins, for throttling by account and by client address across instances.
create table login_failures (
    id          bigint generated always as identity primary key,
    login       text not null,
    client_addr text not null,
    at          timestamptz not null default now()
);
create index login_failures_by_login on login_failures (login, at);
create index login_failures_by_addr on login_failures (client_addr, at);
