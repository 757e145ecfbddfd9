-- Row-level security for the identity tables that were still open to any context:
-- exchanges and the two kinds of credentials. The test that lists the tables under the
-- policies now reads them from the catalogue, and found these three.

-- An exchange is its two institutes' and the exchanged person's. The accounts policy
-- reads exchanges (a host sees its guests); this policy reads no other table.
alter table exchanges enable row level security;
alter table exchanges force row level security;
create policy exchanges_scoped on exchanges
    using (jointeval_system()
           or home_institute_id = any(jointeval_institutes())
           or host_institute_id = any(jointeval_institutes())
           or account_id = jointeval_actor())
    with check (jointeval_system()
                or home_institute_id = any(jointeval_institutes())
                or host_institute_id = any(jointeval_institutes()));

-- A credential is reached through its account: only where the account is visible.
alter table password_credentials enable row level security;
alter table password_credentials force row level security;
create policy password_credentials_scoped on password_credentials
    using (jointeval_system() or account_id in (select id from accounts))
    with check (jointeval_system() or account_id in (select id from accounts));

alter table service_credentials enable row level security;
alter table service_credentials force row level security;
create policy service_credentials_scoped on service_credentials
    using (jointeval_system() or account_id in (select id from accounts))
    with check (jointeval_system() or account_id in (select id from accounts));
