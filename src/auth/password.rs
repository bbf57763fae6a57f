//! Password hashing with argon2id. Both calls are CPU-heavy by design, so they run on actix's
//! blocking thread pool, never on a worker that serves requests.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the blocking thread pool is gone")]
    Pool,
}

/// Hashes a password into a PHC string (argon2id, default parameters, random salt).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    actix_web::web::block(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|_| PasswordError::Pool)?
}

/// Checks a password against a stored PHC string. A malformed stored hash counts as a mismatch.
pub async fn verify(password: String, stored: String) -> Result<bool, PasswordError> {
    actix_web::web::block(move || match PasswordHash::new(&stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    })
    .await
    .map_err(|_| PasswordError::Pool)
}

#[cfg(test)]
mod tests {
    #[actix_web::test]
    async fn a_hash_verifies_only_its_own_password() {
        let stored = super::hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert!(super::verify("correct horse".into(), stored.clone())
            .await
            .expect("verify"));
        assert!(!super::verify("battery staple".into(), stored)
            .await
            .expect("verify"));
        assert!(!super::verify("x".into(), "not a phc string".into())
            .await
            .expect("verify"));
    }
}
