-- Per-sample scores of a run: thousands to millions of rows, idempotent on their key.

create table run_samples (
    run_id       uuid not null references runs (id),
    sample_id    text not null,
    epoch        integer not null,
    scorer       text not null,
    value_number double precision,
    value_label  text,
    answer       text,
    explanation  text,
    metadata     jsonb,
    primary key (run_id, sample_id, epoch, scorer),
    constraint run_samples_one_value check ((value_number is null) <> (value_label is null))
);

-- Where one request's samples wait while it streams in, before they are merged all at
-- once. Rows live only inside the ingesting transaction; unlogged, as they need no
-- crash safety.
create unlogged table run_sample_staging (
    batch_id     uuid not null,
    line         bigint not null,
    sample_id    text not null,
    epoch        integer not null,
    scorer       text not null,
    value_number double precision,
    value_label  text,
    answer       text,
    explanation  text,
    metadata     jsonb
);
create index run_sample_staging_by_batch on run_sample_staging (batch_id);
