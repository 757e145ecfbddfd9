-- A release says what it releases: the results (metrics and per-sample scores) always,
-- and the transcripts (the original log, and the answers and explanations a
-- comparison's disagreements show beside the scores) only when the releasing reviewer
-- says so, since a log can hold hazardous content a partner should not receive by
-- default.
-- Releases stay append-only: releasing the transcripts of a run whose results were
-- released before adds a row, so that one institute may hold a results row and a
-- transcripts row of the same run.
--
-- Every release made before said nothing of transcripts, and counts as results only.

alter table run_releases add column transcripts boolean not null default false;
alter table run_releases drop constraint run_releases_pkey;
alter table run_releases add constraint run_releases_pkey
    primary key (run_id, institute_id, transcripts);

-- The original log is its executing institute's, and readable by those its transcripts
-- were released to; a release of the results alone opens the run, not its log.
drop policy run_log_chunks_scoped on run_log_chunks;
create policy run_log_chunks_scoped on run_log_chunks
    using (jointeval_system()
           or run_id in (select id from runs where institute_id = any(jointeval_institutes()))
           or run_id in (select run_id from run_releases
                         where transcripts and institute_id = any(jointeval_institutes())))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));
