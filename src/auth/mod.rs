//! Credentials: argon2id password hashes and opaque login tokens (random, stored hashed).

pub mod password;
pub mod token;
