-- A label keeps its number beside it, by Inspect's rule (`C` 1, `I` 0, `"3.5"` 3.5 …),
-- whether it came through the results API or in an Inspect log: a score has a label, a
-- number, or both; the numeric filters and statistics read `value_number`. A label stored
-- before keeps none: a finished run's results are frozen (and its digest, formula
-- jointeval-results-v1, is over scores without a number), and a running run's label gets
-- its number when it is written again.
alter table run_samples drop constraint run_samples_one_value;
alter table run_samples add constraint run_samples_a_value
    check (value_number is not null or value_label is not null);
