//! Login tokens: 256 random bits, hex-encoded for the client; only their SHA-256 is stored.
//! A fast hash is right here: the token is already high-entropy, so there is nothing to stretch.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh token as the client will hold it.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The form a token is stored and looked up in.
pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_distinct_and_hashed() {
        let a = super::generate();
        let b = super::generate();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(super::digest(&a), super::digest(&a));
        assert_ne!(super::digest(&a), super::digest(&b));
        assert_eq!(super::digest(&a).len(), 32);
    }
}
