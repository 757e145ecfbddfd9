-- Inspect logs imported into runs: what the log said (on the run, with how it deviates
-- from the protocol), and the original log itself, kept in 1 MiB chunks for its readers.

alter table runs add column inspect_log jsonb;
alter table runs add column deviations jsonb not null default '[]';
-- One log's results count once: an institute imports an eval into one run.
create unique index runs_inspect_eval_once on runs (institute_id, (inspect_log ->> 'eval_id'))
    where inspect_log is not null;

create table run_log_chunks (
    run_id uuid not null references runs (id),
    n      integer not null,
    data   bytea not null,
    primary key (run_id, n)
);

alter table run_log_chunks enable row level security;
alter table run_log_chunks force row level security;
create policy run_log_chunks_scoped on run_log_chunks
    using (jointeval_system() or run_id in (select id from runs))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
grant select, insert on run_log_chunks to jointeval_app;
