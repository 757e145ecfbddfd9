//! Access tokens: EdDSA-signed JWTs (RFC 9068 profile), keys kept in the database.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jointeval_domain::Scope;
use jointeval_domain::audit::{Change, Link};
use jointeval_store::PgConnection;
use jointeval_store::{ActingAs, PgPool, StoreError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `typ` header of our access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";

/// What tokens say about who issued them and for whom.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub lifetime: Duration,
    /// How far the clocks of the instances that issue and check tokens may disagree: a
    /// token is good until `exp` plus this, and from `nbf` and `iat` minus this.
    pub clock_skew: Duration,
}

/// The largest clock skew allowed: a few seconds, so that `exp` means what it says.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10);

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "jointeval".into(),
            audience: "jointeval-api".into(),
            lifetime: Duration::from_secs(15 * 60),
            clock_skew: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The account's token generation when the token was issued; the token is refused
    /// once the account's has moved on (a disable, a password reset, a secret rotation).
    #[serde(default, rename = "gen")]
    pub generation: i64,
}

/// Creates the first signing key unless one exists. Safe with several instances
/// starting at once: the check and the insert happen under one table lock.
pub async fn ensure_signing_key(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = jointeval_store::begin(pool, &ActingAs::system("keys")).await?;
    if jointeval_store::signing_keys::exists_locked(&mut tx).await? {
        return jointeval_store::commit(tx).await;
    }
    let kid = add_key(&mut tx).await?;
    let change = key_change("signing_key.created", &kid, &mut tx).await?;
    jointeval_store::audit::commit_audited(tx, &change).await?;
    tracing::info!("created the first token signing key");
    Ok(())
}

/// Adds a new signing key; the previous one verifies the tokens it signed until they expire.
pub async fn rotate_signing_key(pool: &PgPool) -> Result<String, StoreError> {
    let mut tx = jointeval_store::begin(pool, &ActingAs::system("keys")).await?;
    let kid = add_key(&mut tx).await?;
    let change = key_change("signing_key.rotated", &kid, &mut tx).await?;
    jointeval_store::audit::commit_audited(tx, &change).await?;
    Ok(kid)
}

/// Keys sign for the whole service: every institute sees their changes.
async fn key_change(
    action: &'static str,
    kid: &str,
    conn: &mut PgConnection,
) -> Result<Change, StoreError> {
    let institutes = jointeval_store::institutes::all(&mut *conn).await?;
    Ok(Change::new(action, kid).visible_to(institutes.iter().map(|i| i.id)))
}

async fn add_key(conn: &mut PgConnection) -> Result<String, StoreError> {
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let private = key
        .to_pkcs8_der()
        .map_err(|e| StoreError::Corrupt(format!("encoding a new key: {e}")))?;
    let public = key.verifying_key().to_bytes();
    let kid = thumbprint(&public);
    jointeval_store::signing_keys::rotate(conn, &kid, private.as_bytes(), &public).await?;
    Ok(kid)
}

/// The RFC 7638 thumbprint of an Ed25519 public key: a stable `kid`.
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A signed token and how long it lives.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    /// The token's id, which the audit trail records instead of the token.
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("no signing key exists; the service creates one at start")]
    NoKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// A failure to sign is ours, and logged; the database's is answered as such.
impl From<IssueError> for crate::problem::ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Store(e) => e.into(),
            other => {
                tracing::error!(error = %other, "signing");
                crate::problem::Problem::internal().into()
            }
        }
    }
}

/// Signs a token for `account_id` of the token `generation` that was current when its
/// credential was checked: read in the same transaction as the credential, so that a reset
/// or a disable committed while the password hashes ends this token too.
pub async fn issue(
    conn: &mut PgConnection,
    settings: &TokenSettings,
    account_id: Uuid,
    generation: i64,
    scopes: Option<&[Scope]>,
) -> Result<Issued, IssueError> {
    let key = jointeval_store::signing_keys::current(conn)
        .await?
        .ok_or(IssueError::NoKey)?;
    let now = jsonwebtoken::get_current_timestamp();
    let lifetime = settings.lifetime.as_secs();
    let claims = Claims {
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        sub: account_id.to_string(),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        jti: Uuid::now_v7().to_string(),
        scope: scopes.map(|s| {
            s.iter()
                .map(|scope| scope.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        generation,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(TOKEN_TYPE.into());
    header.kid = Some(key.kid);
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(&key.private_key),
    )?;
    Ok(Issued {
        token,
        expires_in: lifetime,
        jti: claims.jti,
    })
}

/// Why a token was refused; the text goes into `WWW-Authenticate` and the problem body.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token must be an EdDSA-signed access token (typ at+jwt) with a kid")]
    WrongKind,
    #[error("the token's header carries keys or key locations, which are never trusted")]
    ForeignKey,
    #[error("the token was not signed by a key of this service")]
    UnknownKey,
    #[error("the token is expired")]
    Expired,
    #[error("the token is not valid yet: its nbf or iat is in the future")]
    NotYetValid,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a token completely: header, signature (algorithm pinned to EdDSA, key chosen
/// by `kid` among ours), and the claims `iss`, `aud`, `exp`, `nbf`, `iat`, `sub` all
/// required; the times with no more leeway than the clock skew allowed.
pub async fn verify(
    conn: &mut PgConnection,
    settings: &TokenSettings,
    token: &str,
) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if header.alg != Algorithm::EdDSA || !typ_ok {
        return Err(TokenError::WrongKind);
    }
    if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() || header.x5c.is_some()
    {
        return Err(TokenError::ForeignKey);
    }
    let kid = header.kid.ok_or(TokenError::WrongKind)?;
    let keys =
        jointeval_store::signing_keys::verifying(conn, settings.lifetime.as_secs_f64()).await?;
    let key = keys
        .into_iter()
        .find(|k| k.kid == kid && k.public_key.len() == 32)
        .ok_or(TokenError::UnknownKey)?;

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&[&settings.audience]);
    validation.validate_nbf = true;
    let skew = settings.clock_skew.min(MAX_CLOCK_SKEW).as_secs();
    validation.leeway = skew;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_ed_der(&key.public_key),
        &validation,
    )
    .map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        other => TokenError::Invalid(format!("{other:?}")),
    })?;
    // jsonwebtoken checks `nbf` but not `iat`: a token issued in the future is no token
    // of ours either.
    if data.claims.iat > jsonwebtoken::get_current_timestamp() + skew {
        return Err(TokenError::NotYetValid);
    }
    Ok(data.claims)
}

/// The `typ` of a signed audit checkpoint, so that it is never taken for a token.
pub const CHECKPOINT_TYPE: &str = "audit-checkpoint+jwt";

/// What a signed checkpoint asserts: the audit chain had this head at `iat`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointClaims {
    pub iss: String,
    pub iat: u64,
    pub seq: i64,
    pub hash: String,
}

/// Signs the audit chain's head with the current token signing key (a JWS, EdDSA).
pub async fn sign_checkpoint(
    conn: &mut PgConnection,
    settings: &TokenSettings,
    head: &Link,
) -> Result<String, IssueError> {
    let key = jointeval_store::signing_keys::current(conn)
        .await?
        .ok_or(IssueError::NoKey)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(CHECKPOINT_TYPE.into());
    header.kid = Some(key.kid);
    let claims = CheckpointClaims {
        iss: settings.issuer.clone(),
        iat: jsonwebtoken::get_current_timestamp(),
        seq: head.seq,
        hash: head.hash.clone(),
    };
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_der(&key.private_key),
    )?)
}

/// Checks a signed checkpoint against this service's keys, retired ones included.
pub async fn verify_checkpoint(
    conn: &mut PgConnection,
    signed: &str,
) -> Result<CheckpointClaims, CheckpointError> {
    let header = jsonwebtoken::decode_header(signed).map_err(|_| CheckpointError::Malformed)?;
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(CHECKPOINT_TYPE) {
        return Err(CheckpointError::Malformed);
    }
    let kid = header.kid.ok_or(CheckpointError::Malformed)?;
    let key = jointeval_store::signing_keys::public_key(conn, &kid)
        .await?
        .filter(|k| k.len() == 32)
        .ok_or(CheckpointError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_required_spec_claims(&["iss"]);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<CheckpointClaims>(
        signed,
        &DecodingKey::from_ed_der(&key),
        &validation,
    )
    .map_err(|_| CheckpointError::BadSignature)?;
    Ok(data.claims)
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint's signature is not a JWS of type {CHECKPOINT_TYPE} with a kid")]
    Malformed,
    #[error("the checkpoint was not signed by a key of this service")]
    UnknownKey,
    #[error("the checkpoint's signature does not verify: it was altered")]
    BadSignature,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The public keys, as a JSON Web Key Set.
pub async fn jwks(
    conn: &mut PgConnection,
    settings: &TokenSettings,
) -> Result<serde_json::Value, StoreError> {
    let keys =
        jointeval_store::signing_keys::verifying(conn, settings.lifetime.as_secs_f64()).await?;
    Ok(serde_json::json!({
        "keys": keys.iter().map(|k| serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&k.public_key),
            "kid": k.kid,
            "alg": "EdDSA",
            "use": "sig",
        })).collect::<Vec<_>>()
    }))
}
