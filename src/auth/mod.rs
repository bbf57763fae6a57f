//! Credentials: argon2id password hashes (computed on a bounded set of threads), opaque login
//! tokens (random, stored hashed), and the throttle on failed logins.

pub mod hasher;
pub mod password;
pub mod throttle;
pub mod token;
