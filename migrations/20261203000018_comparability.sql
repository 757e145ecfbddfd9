-- A run's comparability verdict: `deviations` as checked against its protocol version
-- and the exercise's model, and when. Unchecked (null) until a log is imported or the run
-- finishes; a run whose log was imported before this column was checked then.
alter table runs add column checked_at timestamptz;
update runs set checked_at = (inspect_log ->> 'imported_at')::timestamptz
 where inspect_log is not null;
