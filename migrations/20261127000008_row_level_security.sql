-- Row-level security: the database itself keeps each institute's rows its own, whatever
-- a handler does. The service connects as a member of `jointeval_app`, which owns
-- nothing and cannot bypass these policies; migrations run as the tables' owner.
--
-- A policy grants a row from the transaction's actor context, set by the store at the
-- start of every transaction (`set_config(…, true)`, transaction-local): the acting
-- account and the institutes it acts for, or `system:<purpose>` for the service's own
-- work (login, authentication, key management, audit verification). Without a context
-- nothing is granted: an unset setting reads as '' and matches no institute.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'jointeval_app') then
        create role jointeval_app nologin;
    end if;
exception
    -- Another database of the same server created it at the same moment.
    when duplicate_object or unique_violation then null;
end $$;

create function jointeval_institutes() returns uuid[] language sql stable as $$
    select coalesce(
        string_to_array(nullif(current_setting('jointeval.institutes', true), ''), ',')::uuid[],
        '{}'::uuid[])
$$;

create function jointeval_actor() returns uuid language sql stable as $$
    select case when current_setting('jointeval.actor', true)
                     ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                then current_setting('jointeval.actor', true)::uuid end
$$;

create function jointeval_system() returns boolean language sql stable as $$
    select coalesce(current_setting('jointeval.actor', true), '') like 'system:%'
$$;

-- Whether the context's institutes take part in a protocol or an exercise (lead or
-- participant). The policies of both the objects and their participant lists ask it;
-- it reads as the owner, past those same policies, so that they need not ask each other.
-- The owner must therefore be a superuser or have BYPASSRLS.
create function jointeval_in_protocol(protocol uuid)
returns boolean language sql stable security definer set search_path = public, pg_temp as $$
    select exists (select 1 from public.protocols
                   where id = protocol and lead_institute_id = any(public.jointeval_institutes()))
        or exists (select 1 from public.protocol_participants
                   where protocol_id = protocol and institute_id = any(public.jointeval_institutes()))
$$;

create function jointeval_in_exercise(exercise uuid)
returns boolean language sql stable security definer set search_path = public, pg_temp as $$
    select exists (select 1 from public.exercises
                   where id = exercise and lead_institute_id = any(public.jointeval_institutes()))
        or exists (select 1 from public.exercise_participants
                   where exercise_id = exercise and institute_id = any(public.jointeval_institutes()))
$$;

-- Whether an account is an active person of an institute: what an admin proposing an
-- exchange to its institute may learn of another institute's account, and no more.
-- Runs as the owner, past the policies on accounts.
create function jointeval_is_active_person_of(account uuid, institute uuid)
returns boolean language sql stable security definer set search_path = public, pg_temp as $$
    select exists (select 1 from public.accounts
                   where id = account and home_institute_id = institute
                     and kind = 'person' and status = 'active')
$$;

-- A slug is unique at its lead institute: a global key would let one institute learn,
-- from a refusal, the slugs of the other's unpublished protocols.
alter table protocols drop constraint protocols_slug_key;
alter table protocols add constraint protocols_slug_key unique (lead_institute_id, slug);

-- Releases record the executing institute, so that their policy needs no look at runs
-- (whose policy looks at releases); the key keeps it the run's.
alter table runs add constraint runs_id_institute_key unique (id, institute_id);
alter table run_releases add column executing_institute_id uuid;
update run_releases rr set executing_institute_id = r.institute_id from runs r where r.id = rr.run_id;
alter table run_releases alter column executing_institute_id set not null;
alter table run_releases add constraint run_releases_executing_institute
    foreign key (run_id, executing_institute_id) references runs (id, institute_id);

-- Privileges: everything the service does, nothing it must not (no TRUNCATE anywhere, no
-- UPDATE or DELETE of the audit trail or of releases).
grant usage on schema public to jointeval_app;
grant select, insert, update, delete on all tables in schema public to jointeval_app;
revoke update, delete on audit_events, run_releases from jointeval_app;
revoke insert, update, delete on audit_head from jointeval_app;
do $$
begin
    -- The migrations' own table, when sqlx runs them (it creates it first).
    if to_regclass('_sqlx_migrations') is not null then
        revoke insert, update, delete on _sqlx_migrations from jointeval_app;
    end if;
end $$;
grant usage on all sequences in schema public to jointeval_app;
-- The functions that read past the policies answer only the service.
revoke execute on function jointeval_in_protocol(uuid), jointeval_in_exercise(uuid),
    jointeval_is_active_person_of(uuid, uuid), audit_head_locked() from public;
grant execute on function jointeval_in_protocol(uuid), jointeval_in_exercise(uuid),
    jointeval_is_active_person_of(uuid, uuid), audit_head_locked() to jointeval_app;

alter table accounts enable row level security;
alter table accounts force row level security;
create policy accounts_scoped on accounts
    using (jointeval_system()
           or home_institute_id = any(jointeval_institutes())
           or id = jointeval_actor()
           or id in (select account_id from exchanges
                     where host_institute_id = any(jointeval_institutes())
                       and status = 'approved' and starts_at <= now() and now() < ends_at))
    with check (jointeval_system() or home_institute_id = any(jointeval_institutes()));

alter table memberships enable row level security;
alter table memberships force row level security;
create policy memberships_scoped on memberships
    using (jointeval_system() or account_id in (select id from accounts))
    with check (jointeval_system() or institute_id = any(jointeval_institutes()));

alter table protocols enable row level security;
alter table protocols force row level security;
create policy protocols_scoped on protocols
    using (jointeval_system() or jointeval_in_protocol(id))
    with check (jointeval_system() or lead_institute_id = any(jointeval_institutes()));

-- Participants are read by those taking part, and set by the lead only.
alter table protocol_participants enable row level security;
alter table protocol_participants force row level security;
create policy protocol_participants_read on protocol_participants for select
    using (jointeval_system() or jointeval_in_protocol(protocol_id));
create policy protocol_participants_add on protocol_participants for insert
    with check (jointeval_system() or protocol_id in
                (select id from protocols where lead_institute_id = any(jointeval_institutes())));
create policy protocol_participants_remove on protocol_participants for delete
    using (jointeval_system() or protocol_id in
           (select id from protocols where lead_institute_id = any(jointeval_institutes())));

alter table protocol_versions enable row level security;
alter table protocol_versions force row level security;
create policy protocol_versions_scoped on protocol_versions
    using (jointeval_system() or protocol_id in (select id from protocols));

alter table protocol_reviews enable row level security;
alter table protocol_reviews force row level security;
create policy protocol_reviews_scoped on protocol_reviews
    using (jointeval_system() or version_id in (select id from protocol_versions))
    with check (jointeval_system()
                or (institute_id = any(jointeval_institutes()) and reviewer_id = jointeval_actor()
                    and version_id in (select id from protocol_versions)));

alter table protocol_comments enable row level security;
alter table protocol_comments force row level security;
create policy protocol_comments_scoped on protocol_comments
    using (jointeval_system() or version_id in (select id from protocol_versions))
    with check (jointeval_system()
                or (author_id = jointeval_actor() and version_id in (select id from protocol_versions)));

alter table protocol_version_editors enable row level security;
alter table protocol_version_editors force row level security;
create policy protocol_version_editors_scoped on protocol_version_editors
    using (jointeval_system() or version_id in (select id from protocol_versions))
    with check (jointeval_system()
                or (account_id = jointeval_actor() and version_id in (select id from protocol_versions)));

alter table exercises enable row level security;
alter table exercises force row level security;
create policy exercises_scoped on exercises
    using (jointeval_system() or jointeval_in_exercise(id))
    with check (jointeval_system() or lead_institute_id = any(jointeval_institutes())
                or jointeval_in_exercise(id));

-- The plan (participants, protocol versions) is read by those taking part and set by
-- the lead; each participant records its own agreement.
alter table exercise_participants enable row level security;
alter table exercise_participants force row level security;
create policy exercise_participants_read on exercise_participants for select
    using (jointeval_system() or jointeval_in_exercise(exercise_id));
create policy exercise_participants_add on exercise_participants for insert
    with check (jointeval_system() or exercise_id in
                (select id from exercises where lead_institute_id = any(jointeval_institutes())));
create policy exercise_participants_remove on exercise_participants for delete
    using (jointeval_system() or exercise_id in
           (select id from exercises where lead_institute_id = any(jointeval_institutes())));

alter table exercise_protocol_versions enable row level security;
alter table exercise_protocol_versions force row level security;
create policy exercise_protocol_versions_read on exercise_protocol_versions for select
    using (jointeval_system() or jointeval_in_exercise(exercise_id));
create policy exercise_protocol_versions_add on exercise_protocol_versions for insert
    with check (jointeval_system() or exercise_id in
                (select id from exercises where lead_institute_id = any(jointeval_institutes())));
create policy exercise_protocol_versions_remove on exercise_protocol_versions for delete
    using (jointeval_system() or exercise_id in
           (select id from exercises where lead_institute_id = any(jointeval_institutes())));

alter table exercise_agreements enable row level security;
alter table exercise_agreements force row level security;
create policy exercise_agreements_read on exercise_agreements for select
    using (jointeval_system() or jointeval_in_exercise(exercise_id));
create policy exercise_agreements_own on exercise_agreements for insert
    with check (jointeval_system()
                or (institute_id = any(jointeval_institutes()) and agreed_by = jointeval_actor()
                    and jointeval_in_exercise(exercise_id)));

-- A run is its executing institute's, and readable by those it was released to; only
-- the executing institute writes it and its results.
alter table runs enable row level security;
alter table runs force row level security;
create policy runs_scoped on runs
    using (jointeval_system()
           or institute_id = any(jointeval_institutes())
           or id in (select run_id from run_releases
                     where institute_id = any(jointeval_institutes())))
    with check (jointeval_system() or institute_id = any(jointeval_institutes()));

alter table run_releases enable row level security;
alter table run_releases force row level security;
create policy run_releases_scoped on run_releases
    using (jointeval_system()
           or institute_id = any(jointeval_institutes())
           or executing_institute_id = any(jointeval_institutes()))
    -- The key above makes the executing institute the run's own.
    with check (jointeval_system() or executing_institute_id = any(jointeval_institutes()));

alter table run_metrics enable row level security;
alter table run_metrics force row level security;
create policy run_metrics_scoped on run_metrics
    using (jointeval_system() or run_id in (select id from runs))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

alter table run_samples enable row level security;
alter table run_samples force row level security;
create policy run_samples_scoped on run_samples
    using (jointeval_system() or run_id in (select id from runs))
    with check (jointeval_system()
                or run_id in (select id from runs where institute_id = any(jointeval_institutes())));

alter table idempotency_keys enable row level security;
alter table idempotency_keys force row level security;
create policy idempotency_keys_own on idempotency_keys
    using (jointeval_system() or account_id = jointeval_actor());

-- Events are read by the institutes they are visible to, and written only in the name
-- of the transaction's own actor.
alter table audit_events enable row level security;
alter table audit_events force row level security;
create policy audit_events_read on audit_events for select
    using (jointeval_system() or visible_to && jointeval_institutes());
create policy audit_events_append on audit_events for insert
    with check (actor = current_setting('jointeval.actor', true));
