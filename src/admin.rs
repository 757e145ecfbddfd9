//! `jointeval admin …`: bootstrapping institutes and their first admins, key rotation.

use anyhow::{Context, bail};
use jointeval_api::auth::secrets;
use jointeval_domain::audit::Change;
use jointeval_domain::{AccountKind, DisplayName, Email, InstituteCode, Password, Role};
use jointeval_store::{ActingAs, PgPool};

use crate::cli::{BootstrapArgs, DatabaseArgs};
use crate::database::Database;

const DEFAULT_INSTITUTES: [(&str, &str); 2] = [
    ("US", "U.S. AI Safety Institute"),
    ("UK", "UK AI Safety Institute"),
];

/// What bootstrap made of one institute.
pub struct Bootstrapped {
    pub institute: String,
    pub email: String,
    /// A generated one-time password, to be shown once; `None` when it came from the
    /// environment or the admin already existed.
    pub one_time_password: Option<String>,
    pub created: bool,
}

pub async fn bootstrap_and_exit(args: &BootstrapArgs) -> anyhow::Result<()> {
    let database = Database::open(&args.database).await?;
    let result = async {
        database.migrate().await?;
        let institutes = if args.institutes.is_empty() {
            DEFAULT_INSTITUTES
                .iter()
                .map(|(c, n)| (c.to_string(), n.to_string()))
                .collect()
        } else {
            args.institutes
                .iter()
                .map(|pair| split_pair(pair, "--institute"))
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let admins = args
            .admins
            .iter()
            .map(|pair| split_pair(pair, "--admin"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let done = bootstrap(&database.pool, &institutes, &admins).await?;
        print_logins(&done);
        Ok(())
    }
    .await;
    database.close().await;
    result
}

/// Bootstraps the default institutes when the database has no account at all: the
/// embedded default's very first start.
pub async fn bootstrap_if_empty(pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = jointeval_store::begin(pool, &ActingAs::system("bootstrap")).await?;
    let any = jointeval_store::accounts::any(&mut tx).await?;
    jointeval_store::commit(tx).await?;
    if any {
        return Ok(());
    }
    let institutes: Vec<(String, String)> = DEFAULT_INSTITUTES
        .iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect();
    let done = bootstrap(pool, &institutes, &[]).await?;
    print_logins(&done);
    Ok(())
}

fn print_logins(done: &[Bootstrapped]) {
    for b in done {
        match (&b.one_time_password, b.created) {
            (Some(password), _) => println!(
                "{}: admin {} created; one-time password (shown once, change it at first login): {}",
                b.institute, b.email, password
            ),
            (None, true) => println!(
                "{}: admin {} created with the password from JOINTEVAL_ADMIN_PASSWORD_{}",
                b.institute, b.email, b.institute
            ),
            (None, false) => println!("{}: admin {} already exists", b.institute, b.email),
        }
    }
    if done.iter().any(|b| b.one_time_password.is_some()) {
        println!(
            "log in: curl -s -d grant_type=password -d username=<email> -d password=<password> \
             http://<address>/v1/auth/token, then set your own password with POST /v1/me/password"
        );
    }
}

fn split_pair(pair: &str, flag: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
        _ => bail!("{flag} takes CODE=VALUE, not {pair:?}"),
    }
}

pub async fn bootstrap(
    pool: &PgPool,
    institutes: &[(String, String)],
    admins: &[(String, String)],
) -> anyhow::Result<Vec<Bootstrapped>> {
    let mut done = Vec::new();
    for (code, name) in institutes {
        let code = InstituteCode::parse("institute", code).map_err(|e| anyhow::anyhow!("{e}"))?;
        let email = admins
            .iter()
            .find(|(c, _)| c == code.as_str())
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| format!("admin@{}.jointeval.invalid", code.as_str().to_lowercase()));
        let email = Email::parse("admin", &email).map_err(|e| anyhow::anyhow!("{e}"))?;
        let from_env = std::env::var(format!("JOINTEVAL_ADMIN_PASSWORD_{}", code.as_str())).ok();
        let (password, one_time) = match from_env {
            Some(p) => (
                Password::parse("password", &p).map_err(|e| {
                    anyhow::anyhow!("JOINTEVAL_ADMIN_PASSWORD_{}: {e}", code.as_str())
                })?,
                false,
            ),
            None => (
                Password::parse("password", &secrets::one_time_password())
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
                true,
            ),
        };
        let hash = secrets::hash_password(password.expose().to_owned()).await;

        let mut tx = jointeval_store::begin(pool, &ActingAs::system("bootstrap")).await?;
        let (institute, institute_created) =
            match jointeval_store::institutes::get_by_code(&mut *tx, code.as_str()).await? {
                Some(i) => (i, false),
                None => (
                    jointeval_store::institutes::insert(&mut *tx, &code, name)
                        .await
                        .with_context(|| format!("creating institute {code}"))?,
                    true,
                ),
            };
        let exists = jointeval_store::accounts::find_person_login(&mut tx, email.as_str()).await?;
        if exists.is_some() {
            jointeval_store::commit(tx).await?;
            done.push(Bootstrapped {
                institute: code.to_string(),
                email: email.as_str().to_owned(),
                one_time_password: None,
                created: false,
            });
            continue;
        }
        let display = DisplayName::parse("name", &format!("{} administrator", code.as_str()))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let account = jointeval_store::accounts::insert(
            &mut tx,
            &jointeval_store::accounts::NewAccount {
                kind: AccountKind::Person,
                email: Some(&email),
                display_name: &display,
                home_institute_id: institute.id,
            },
        )
        .await?;
        jointeval_store::credentials::set_password(&mut tx, account.id, &hash, one_time).await?;
        jointeval_store::memberships::grant(
            &mut tx,
            &jointeval_store::memberships::NewMembership {
                account_id: account.id,
                institute_id: institute.id,
                role: Role::Admin,
                valid_from: chrono::Utc::now(),
                valid_until: None,
                granted_by: None,
            },
        )
        .await?;
        let change = Change::new("account.bootstrapped", account.id)
            .by(institute.id)
            .visible_to([institute.id])
            .summary(serde_json::json!({
                "institute": code.as_str(), "institute_created": institute_created,
                "email": email.as_str(), "role": "admin", "one_time_password": one_time,
            }));
        jointeval_store::audit::commit_audited(tx, &change).await?;
        done.push(Bootstrapped {
            institute: code.to_string(),
            email: email.as_str().to_owned(),
            one_time_password: one_time.then(|| password.expose().to_owned()),
            created: true,
        });
    }
    Ok(done)
}

pub async fn rotate_signing_key_and_exit(args: &DatabaseArgs) -> anyhow::Result<()> {
    let database = Database::open(args).await?;
    let result = async {
        database.migrate().await?;
        let kid = jointeval_api::auth::tokens::rotate_signing_key(&database.pool).await?;
        println!(
            "new signing key {kid}; tokens signed by the previous key verify until they expire"
        );
        anyhow::Ok(())
    }
    .await;
    database.close().await;
    result
}
