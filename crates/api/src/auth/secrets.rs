//! Passwords (argon2id) and service-account secrets (random, SHA-256).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// OWASP's argon2id baseline: 19 MiB of memory, 2 passes, 1 lane. One verification
/// costs a few tens of milliseconds of one core (see the README for the figure).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const ARGON2_PASSES: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("argon2 parameters are valid constants");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// How many argon2 computations run at once: each holds 19 MiB, so a burst of logins
/// waits its turn instead of growing memory without bound (the request timeout bounds
/// the wait).
fn hashing() -> &'static tokio::sync::Semaphore {
    static PERMITS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores * 2)
    })
}

/// Argon2 computations running now, as `auth_password_hashes_in_flight` reports them.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The most that ever ran at once: what the tests hold to the semaphore's bound.
#[cfg(test)]
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// One argon2 computation under way, counted until it is dropped.
struct Computing;

impl Computing {
    fn start() -> Self {
        let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        metrics::gauge!("auth_password_hashes_in_flight").set(now as f64);
        #[cfg(test)]
        PEAK.fetch_max(now, Ordering::SeqCst);
        Self
    }
}

impl Drop for Computing {
    fn drop(&mut self) {
        let now = IN_FLIGHT.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("auth_password_hashes_in_flight").set(now as f64);
    }
}

/// Hashes a password on the blocking pool: argon2 is deliberately slow.
pub async fn hash_password(password: String) -> String {
    let _turn = hashing().acquire().await;
    tokio::task::spawn_blocking(move || {
        let _computing = Computing::start();
        hash_now(&password)
    })
    .await
    .expect("hashing does not panic")
}

fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password of bounded length")
        .to_string()
}

/// Verifies `password` against `hash`, or against a dummy hash when there is no
/// account, so that an unknown account costs the same time as a wrong password.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    let _turn = hashing().acquire().await;
    tokio::task::spawn_blocking(move || {
        let _computing = Computing::start();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let matches = PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && matches
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(&random_token(24)))
}

/// A random, URL-safe string carrying `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A one-time password for a new or reset account: 20 random characters.
pub fn one_time_password() -> String {
    random_token(15)
}

/// A service account's secret: 256 random bits, so a fast hash is enough to store it.
pub fn new_service_secret() -> String {
    format!("jes_{}", random_token(32))
}

pub fn hash_service_secret(secret: &str) -> String {
    jointeval_domain::canonical::sha256_hex([secret.as_bytes()])
}

pub fn verify_service_secret(stored_hash: Option<&str>, secret: &str) -> bool {
    let given = hash_service_secret(secret);
    let stored = stored_hash.unwrap_or("");
    // Constant time in the length of the hashes, which is fixed.
    given.len() == stored.len()
        && given
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse battery".into()).await;
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(Some(hash.clone()), "correct horse battery".into()).await);
        assert!(!verify_password(Some(hash), "correct horse batterY".into()).await);
        assert!(!verify_password(None, "correct horse battery".into()).await);
        assert!(!verify_password(Some("not a hash".into()), "x".into()).await);
    }

    /// A burst of logins is served in turns: no more argon2 computations at once than
    /// the semaphore allows, however many wait (without it, the blocking pool would run
    /// all of them, each with its 19 MiB).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_password_checks_runs_at_most_twice_the_cores_at_once() {
        let hash = hash_password("correct horse battery".into()).await;
        let bound = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let burst: Vec<_> = (0..bound * 6)
            .map(|_| {
                tokio::spawn(verify_password(
                    Some(hash.clone()),
                    "correct horse battery".into(),
                ))
            })
            .collect();
        for check in burst {
            assert!(check.await.expect("a check"));
        }
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(peak <= bound, "{peak} computations at once, past {bound}");
        assert!(peak > 1, "the burst did not overlap at all: {peak}");
    }

    #[test]
    fn service_secrets_verify_by_hash() {
        let secret = new_service_secret();
        let stored = hash_service_secret(&secret);
        assert!(verify_service_secret(Some(&stored), &secret));
        assert!(!verify_service_secret(Some(&stored), "jes_guess"));
        assert!(!verify_service_secret(None, &secret));
        assert_ne!(new_service_secret(), secret);
    }
}
