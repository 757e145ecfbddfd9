-- Evaluation protocols, their versions, reviews and discussion.

create table protocols (
    id                uuid primary key,
    slug              text not null,
    title             text not null,
    risk_area         text not null,
    summary           text not null default '',
    lead_institute_id uuid not null references institutes (id),
    status            text not null default 'active',
    created_by        uuid not null references accounts (id),
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint protocols_slug_key unique (slug),
    constraint protocols_slug_format check (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' and char_length(slug) between 3 and 64),
    constraint protocols_title_length check (char_length(title) between 1 and 200),
    constraint protocols_summary_length check (char_length(summary) <= 10000),
    constraint protocols_risk_area check (risk_area in ('chemical_biological', 'cyber', 'autonomy',
                                                       'societal_harms', 'safeguards', 'other')),
    constraint protocols_status check (status in ('active', 'retired'))
);

create table protocol_participants (
    protocol_id  uuid not null references protocols (id) on delete cascade,
    institute_id uuid not null references institutes (id),
    primary key (protocol_id, institute_id)
);
create index protocol_participants_by_institute on protocol_participants (institute_id, protocol_id);

create table protocol_versions (
    id             uuid primary key,
    protocol_id    uuid not null references protocols (id),
    number         integer not null,
    status         text not null default 'draft',
    content        jsonb not null,
    -- Recorded when the version is frozen for review.
    content_sha256 text,
    -- The version this draft was copied from, if any.
    based_on       integer,
    -- Bumped by every edit; the ETag of the draft.
    revision       integer not null default 1,
    created_by     uuid not null references accounts (id),
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    submitted_by   uuid references accounts (id),
    submitted_at   timestamptz,
    decided_at     timestamptz,
    constraint protocol_versions_number_key unique (protocol_id, number),
    constraint protocol_versions_status check (status in ('draft', 'in_review', 'approved', 'changes_requested'))
);
-- A protocol has at most one version open (a draft or in review) at a time.
create unique index protocol_versions_one_open on protocol_versions (protocol_id)
    where status in ('draft', 'in_review');

-- Approved versions are immutable forever, whatever a handler does.
create function protocol_versions_keep_approved() returns trigger language plpgsql as $$
begin
    if old.status = 'approved' then
        raise exception 'protocol version % is approved and immutable', old.id
            using errcode = 'check_violation', constraint = 'protocol_versions_approved_immutable';
    end if;
    return new;
end $$;
create trigger protocol_versions_keep_approved before update or delete on protocol_versions
    for each row execute function protocol_versions_keep_approved();

create table protocol_version_editors (
    version_id    uuid not null references protocol_versions (id),
    account_id    uuid not null references accounts (id),
    first_edit_at timestamptz not null default now(),
    primary key (version_id, account_id)
);

create table protocol_reviews (
    id           uuid primary key,
    version_id   uuid not null references protocol_versions (id),
    reviewer_id  uuid not null references accounts (id),
    institute_id uuid not null references institutes (id),
    verdict      text not null,
    comment      text not null default '',
    created_at   timestamptz not null default now(),
    constraint protocol_reviews_once unique (version_id, reviewer_id),
    constraint protocol_reviews_verdict check (verdict in ('approve', 'request_changes')),
    constraint protocol_reviews_comment_length check (char_length(comment) <= 10000)
);

create table protocol_comments (
    id         uuid primary key,
    version_id uuid not null references protocol_versions (id),
    parent_id  uuid references protocol_comments (id),
    author_id  uuid not null references accounts (id),
    -- A JSON pointer into the version's content, when the comment is about one field.
    anchor     text,
    body       text not null,
    created_at timestamptz not null default now(),
    constraint protocol_comments_body_length check (char_length(body) between 1 and 10000),
    constraint protocol_comments_anchor_length check (char_length(anchor) <= 500)
);
create index protocol_comments_by_version on protocol_comments (version_id, id);
