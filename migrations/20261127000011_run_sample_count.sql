-- How many scores a run holds, kept on the run as batches are written: counting them on
-- every upload made filling a run in many requests cost the square of its size.
alter table runs add column sample_count bigint not null default 0;
update runs r set sample_count = (select count(*) from run_samples s where s.run_id = r.id);
