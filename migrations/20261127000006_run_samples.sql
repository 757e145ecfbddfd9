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

