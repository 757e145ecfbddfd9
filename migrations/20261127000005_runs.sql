-- Test runs, their aggregate metrics, their releases, and idempotent creation.

create table runs (
    id               uuid primary key,
    exercise_id      uuid not null references exercises (id),
    protocol_id      uuid not null,
    protocol_version integer not null,
    -- The executing institute: the results are its own until released.
    institute_id     uuid not null references institutes (id),
    harness_name     text not null,
    harness_version  text not null,
    config           jsonb not null default '{}',
    model_version    text not null,
    status           text not null default 'queued',
    created_by       uuid not null references accounts (id),
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_by       uuid not null references accounts (id),
    updated_at       timestamptz not null default now(),
    -- sha256 of the results, recorded when the run finishes.
    digest           text,
    foreign key (exercise_id, protocol_id) references exercise_protocol_versions (exercise_id, protocol_id),
    foreign key (protocol_id, protocol_version) references protocol_versions (protocol_id, number),
    constraint runs_status check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    constraint runs_text_length check (char_length(harness_name) between 1 and 100
                                       and char_length(harness_version) between 1 and 100
                                       and char_length(model_version) between 1 and 200)
);
create index runs_by_exercise on runs (exercise_id, id);

create table run_metrics (
    run_id       uuid not null references runs (id),
    scorer       text not null,
    metric       text not null,
    value        double precision not null,
    stderr       double precision,
    sample_count bigint,
    primary key (run_id, scorer, metric)
);

create table run_releases (
    run_id       uuid not null references runs (id),
    institute_id uuid not null references institutes (id),
    released_by  uuid not null references accounts (id),
    released_at  timestamptz not null default now(),
    digest       text not null,
    primary key (run_id, institute_id)
);

-- A release is never silently undone.
create function run_releases_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'releases are never changed or withdrawn'
        using errcode = 'check_violation', constraint = 'run_releases_append_only';
end $$;
create trigger run_releases_append_only before update or delete on run_releases
    for each row execute function run_releases_append_only();

-- The first answer to a creating request, replayed when it is retried with the same key.
create table idempotency_keys (
    account_id     uuid not null references accounts (id),
    key            text not null,
    request_sha256 text not null,
    status         integer not null,
    body           jsonb not null,
    created_at     timestamptz not null default now(),
    primary key (account_id, key),
    constraint idempotency_keys_length check (char_length(key) between 1 and 200)
);
