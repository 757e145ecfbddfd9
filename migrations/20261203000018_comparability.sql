-- A run's comparability verdict: `deviations` as checked against its protocol version
-- and the exercise's model, and when. Unchecked (null) until a log is imported or the run
-- finishes. Runs checked before this column are left unchecked: their deviations did not
-- hold the run to the exercise's model.
alter table runs add column checked_at timestamptz;
-- The protocol's task it was checked against (by the task's name): runs compare only
-- with runs of the same task.
alter table runs add column checked_task text;
