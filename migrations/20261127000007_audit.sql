-- The audit trail: one event per change, in the change's own transaction, chained by
-- sha256 so that a rewritten history is detected (`jointeval audit verify`).

create table audit_events (
    seq          bigint primary key,
    at           timestamptz not null,
    -- The acting account's id, or `system:<purpose>` for the service's own work.
    actor        text not null,
    -- The institute in whose capacity the actor acted, where there is one.
    institute_id uuid,
    action       text not null,
    object_type  text not null,
    object_id    text not null,
    -- The institutes whose admins (and, for joint objects, reviewers) may read the event.
    visible_to   uuid[] not null,
    -- Canonical JSON, stored as the exact text that was hashed.
    summary      text not null,
    request_id   text,
    client_addr  text,
    prev_hash    text not null,
    hash         text not null,
    constraint audit_events_seq_positive check (seq > 0)
);
create index audit_events_by_object on audit_events (object_type, object_id, seq);
create index audit_events_by_actor on audit_events (actor, seq);
create index audit_events_by_visibility on audit_events using gin (visible_to);

-- The end of the chain. Its row lock orders writers, also across service instances:
-- a transaction holds it from its event's insert to its commit, so positions are
-- linear, and a rolled-back transaction leaves no gap.
create table audit_head (
    singleton boolean primary key default true,
    seq       bigint not null,
    hash      text not null,
    constraint audit_head_one_row check (singleton)
);
insert into audit_head (singleton, seq, hash) values (true, 0, repeat('0', 64));

-- An event must extend the head exactly; the head then moves to it. As the owner, with
-- a fixed search path: the service's role may not move the head itself, nor shadow it.
create function audit_events_extend_head() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
declare
    head public.audit_head%rowtype;
begin
    select * into head from public.audit_head for update;
    if new.seq <> head.seq + 1 or new.prev_hash <> head.hash then
        raise exception 'audit event % does not extend the chain at %', new.seq, head.seq
            using errcode = 'check_violation', constraint = 'audit_events_linear';
    end if;
    update public.audit_head set seq = new.seq, hash = new.hash;
    return new;
end $$;

-- The head, locked until the transaction ends: the writer computes the next event's hash
-- from it, and every other writer waits.
create function audit_head_locked(out seq bigint, out hash text)
language sql security definer set search_path = public, pg_temp as $$
    select seq, hash from public.audit_head for update
$$;

create trigger audit_events_extend_head before insert on audit_events
    for each row execute function audit_events_extend_head();

create function audit_append_only() returns trigger language plpgsql as $$
begin
    -- The head moves only from the insert trigger above, one level down.
    if tg_table_name = 'audit_head' and tg_op = 'UPDATE' and pg_trigger_depth() > 1 then
        return new;
    end if;
    raise exception 'the audit trail is append-only (% on %)', tg_op, tg_table_name
        using errcode = 'check_violation', constraint = 'audit_append_only';
end $$;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function audit_append_only();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function audit_append_only();
create trigger audit_head_guarded before update or delete on audit_head
    for each row execute function audit_append_only();
create trigger audit_head_no_truncate before truncate on audit_head
    for each statement execute function audit_append_only();
