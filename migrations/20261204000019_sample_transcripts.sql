-- A score's answer, explanation and metadata are transcripts: the model's output, the
-- grader's reasoning (a model grader's whole conversation, in Inspect's score metadata).
-- A release of the results alone must not hand them over, so they move out of
-- run_samples into a table of their own, readable as the original log is: by the run's
-- institute, and by those its transcripts were released to. The errored samples'
-- messages (a traceback can quote the model) go the same way.
--
-- What stays in run_samples is the results: the value, and now the sample's own
-- metadata (Inspect's Sample.metadata, from the dataset), which a clustered comparison
-- reads and which is released with the results. Scores stored before had no sample
-- metadata: their score metadata is a transcript, and is not copied into it.

-- The scores are moved as the owner: were row-level security to hide some of them from
-- it, the copy would miss them and the columns would be dropped with them. Off, a policy
-- in the way is an error instead.
set local row_security = off;

create table run_sample_transcripts (
    run_id      uuid not null,
    sample_id   text not null,
    epoch       integer not null,
    scorer      text not null,
    answer      text,
    explanation text,
    metadata    jsonb,
    primary key (run_id, sample_id, epoch, scorer),
    -- Not a key of run_samples: its check, a lookup per row, took 2.8 s of a million-score
    -- upload (BENCHMARKS.md). The scores and their transcripts are written together, and
    -- a transcript is only ever read beside its score.
    foreign key (run_id) references runs (id),
    constraint run_sample_transcripts_something
        check (answer is not null or explanation is not null or metadata is not null)
);

insert into run_sample_transcripts (run_id, sample_id, epoch, scorer, answer, explanation,
                                    metadata)
select run_id, sample_id, epoch, scorer, answer, explanation, metadata
from run_samples
where answer is not null or explanation is not null or metadata is not null;

alter table run_samples drop column answer;
alter table run_samples drop column explanation;
alter table run_samples drop column metadata;
alter table run_samples add column sample_metadata jsonb;

-- The transcripts' rule, the same for every table that holds them. It is written out in
-- each policy rather than called as a function: PostgreSQL does not inline a function
-- with subqueries, and would run its subqueries once per row of a million-row export.
alter table run_sample_transcripts enable row level security;
alter table run_sample_transcripts force row level security;
-- Read by those the rule names; written, replaced and removed by the run's institute
-- only (a partner reading the transcripts must not be able to delete them).
create policy run_sample_transcripts_read on run_sample_transcripts for select
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes()))
           or run_id in (select run_id from run_releases
                         where transcripts and institute_id = any(jointeval_institutes())));
create policy run_sample_transcripts_insert on run_sample_transcripts for insert
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_sample_transcripts_update on run_sample_transcripts for update
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_sample_transcripts_delete on run_sample_transcripts for delete
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
grant select, insert, update, delete on run_sample_transcripts to jointeval_app;

-- The scores themselves are read by every reader of the run, but written, replaced and
-- removed by its institute only.
drop policy run_samples_scoped on run_samples;
create policy run_samples_read on run_samples for select
    using (jointeval_system() or run_id in (select id from runs));
create policy run_samples_insert on run_samples for insert
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_samples_update on run_samples for update
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_samples_delete on run_samples for delete
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

-- The same for the metrics.
drop policy run_metrics_scoped on run_metrics;
create policy run_metrics_read on run_metrics for select
    using (jointeval_system() or run_id in (select id from runs));
create policy run_metrics_insert on run_metrics for insert
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_metrics_update on run_metrics for update
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
create policy run_metrics_delete on run_metrics for delete
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

drop policy run_sample_errors_scoped on run_sample_errors;
create policy run_sample_errors_scoped on run_sample_errors
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes()))
           or run_id in (select run_id from run_releases
                         where transcripts and institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

drop policy run_log_chunks_scoped on run_log_chunks;
create policy run_log_chunks_scoped on run_log_chunks
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes()))
           or run_id in (select run_id from run_releases
                         where transcripts and institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

-- The digest of the transcripts, which the results digest (jointeval-results-v3) ends
-- with: a partner holding the results alone checks the digest without the transcripts.
alter table runs add column transcripts_digest text;
