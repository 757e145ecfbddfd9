-- What an Inspect log says beyond its per-epoch scores: each sample's value reduced over
-- its epochs, per scorer and reducer, as Inspect computed it; the samples that ended in
-- an error instead of a score, with Inspect's message; and, on each metric, its name (two
-- metrics of a scorer may share one: Inspect keys them `mean` and `mean2`) and how many
-- samples it left unscored.

create table run_reductions (
    run_id       uuid not null references runs (id),
    scorer       text not null,
    -- '' where Inspect names no reducer.
    reducer      text not null,
    sample_id    text not null,
    value_number double precision,
    value_label  text,
    primary key (run_id, scorer, reducer, sample_id),
    constraint run_reductions_a_value check (value_number is not null or value_label is not null)
);

create table run_sample_errors (
    run_id    uuid not null references runs (id),
    sample_id text not null,
    epoch     integer not null,
    message   text not null,
    primary key (run_id, sample_id, epoch)
);

alter table run_metrics add column name text;
alter table run_metrics add column unscored_count bigint;

alter table run_reductions enable row level security;
alter table run_reductions force row level security;
create policy run_reductions_scoped on run_reductions
    using (jointeval_system() or run_id in (select id from runs))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
grant select, insert on run_reductions to jointeval_app;

alter table run_sample_errors enable row level security;
alter table run_sample_errors force row level security;
create policy run_sample_errors_scoped on run_sample_errors
    using (jointeval_system() or run_id in (select id from runs))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
grant select, insert on run_sample_errors to jointeval_app;
