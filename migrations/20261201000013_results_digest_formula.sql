-- A run's digest covers its per-sample scores as well as its metrics from now on
-- (formula jointeval-results-v1, in the README). A digest recorded before covers the
-- metrics only, and says so: its formula is jointeval-metrics-v0.
alter table runs add column digest_formula text;
update runs set digest_formula = 'jointeval-metrics-v0' where digest is not null;
alter table runs add constraint runs_digest_has_formula
    check ((digest is null) = (digest_formula is null));
