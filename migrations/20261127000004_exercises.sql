-- Joint testing exercises, and each participating institute's agreement to their plan.

create table exercises (
    id                uuid primary key,
    title             text not null,
    model_provider    text not null,
    model_name        text not null,
    model_version     text not null,
    model_access      text not null,
    lead_institute_id uuid not null references institutes (id),
    starts_at         timestamptz not null,
    ends_at           timestamptz not null,
    status            text not null default 'planned',
    -- Bumped by every change of the plan; agreements are to one revision.
    plan_revision     integer not null default 1,
    created_by        uuid not null references accounts (id),
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint exercises_title_length check (char_length(title) between 1 and 200),
    constraint exercises_model_access check (model_access in ('public_api', 'open_weights', 'other')),
    constraint exercises_window check (ends_at > starts_at),
    constraint exercises_status check (status in ('planned', 'active', 'completed', 'cancelled'))
);

create table exercise_participants (
    exercise_id  uuid not null references exercises (id) on delete cascade,
    institute_id uuid not null references institutes (id),
    primary key (exercise_id, institute_id)
);
create index exercise_participants_by_institute on exercise_participants (institute_id, exercise_id);

create table exercise_protocol_versions (
    exercise_id uuid not null references exercises (id) on delete cascade,
    protocol_id uuid not null references protocols (id),
    number      integer not null,
    primary key (exercise_id, protocol_id),
    foreign key (protocol_id, number) references protocol_versions (protocol_id, number)
);

create table exercise_agreements (
    exercise_id   uuid not null references exercises (id) on delete cascade,
    institute_id  uuid not null references institutes (id),
    plan_revision integer not null,
    agreed_by     uuid not null references accounts (id),
    agreed_at     timestamptz not null default now(),
    primary key (exercise_id, institute_id, plan_revision)
);
