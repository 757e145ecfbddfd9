-- The parties to the partnership. Nothing in the code assumes there are exactly two.
create table institutes (
    id         uuid primary key,
    code       text not null,
    name       text not null,
    created_at timestamptz not null default now(),
    constraint institutes_code_key unique (code),
    constraint institutes_code_format check (code ~ '^[A-Z][A-Z0-9_]{1,15}$'),
    constraint institutes_name_length check (char_length(name) between 1 and 200)
);
