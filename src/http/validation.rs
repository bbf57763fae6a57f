//! Input rules shared by the routes. Each returns the cleaned value or a 400 saying what is wrong.

use chrono::{Datelike, NaiveDate, Utc};

use super::error::ApiError;

pub const NAME_MAX_CHARS: usize = 100;
pub const CITY_MAX_CHARS: usize = 100;
pub const BIOGRAPHY_MAX_CHARS: usize = 4_000;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const POST_MAX_CHARS: usize = 10_000;
pub const FEED_MAX_LIMIT: i64 = 1_000;
/// Deepest a feed page may reach: `offset + limit` at most this.
pub const FEED_MAX_DEPTH: i64 = 10_000;

/// PostgreSQL's `text` cannot hold U+0000: refused here as a 400, before it reaches a query
/// and fails there.
fn no_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Trimmed, non-empty, at most `max` characters, no NUL.
pub fn required_text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    no_nul(field, value)?;
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::BadRequest(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(value)
}

/// Trimmed, possibly empty, at most `max` characters, no NUL.
pub fn optional_text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    no_nul(field, value)?;
    let value = value.trim();
    if value.chars().count() > max {
        return Err(ApiError::BadRequest(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(value)
}

/// A real calendar date, `YYYY-MM-DD`, from 1900 up to today.
pub fn birthdate(value: &str) -> Result<NaiveDate, ApiError> {
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::BadRequest("birthdate must be a real date, YYYY-MM-DD".into()))?;
    if date.year() < 1900 || date > Utc::now().date_naive() {
        return Err(ApiError::BadRequest(
            "birthdate must be between 1900-01-01 and today".into(),
        ));
    }
    Ok(date)
}

pub fn password(value: &str) -> Result<(), ApiError> {
    let length = value.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&length) {
        return Err(ApiError::BadRequest(format!(
            "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )));
    }
    Ok(())
}

/// 1 to 10,000 characters, not only white space, no NUL. Kept as written (no trimming).
pub fn post_text(value: &str) -> Result<(), ApiError> {
    no_nul("text", value)?;
    if value.trim().is_empty() {
        return Err(ApiError::BadRequest("text must not be empty".into()));
    }
    if value.chars().count() > POST_MAX_CHARS {
        return Err(ApiError::BadRequest(format!(
            "text must be at most {POST_MAX_CHARS} characters"
        )));
    }
    Ok(())
}

/// `offset` ≥ 0 (default 0) and 1 ≤ `limit` ≤ 1000 (default 10).
pub fn page(offset: Option<i64>, limit: Option<i64>) -> Result<(i64, i64), ApiError> {
    let offset = offset.unwrap_or(0);
    let limit = limit.unwrap_or(10);
    if offset < 0 {
        return Err(ApiError::BadRequest("offset must be >= 0".into()));
    }
    if !(1..=FEED_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {FEED_MAX_LIMIT}"
        )));
    }
    // A deep page costs the database every row before it; past this depth, follow the live
    // feed (or `since`) instead.
    if offset.saturating_add(limit) > FEED_MAX_DEPTH {
        return Err(ApiError::BadRequest(format!(
            "offset + limit must be at most {FEED_MAX_DEPTH}"
        )));
    }
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert_eq!(required_text("f", "  Ann ", 10).ok(), Some("Ann"));
        assert!(required_text("f", "   ", 10).is_err());
        assert!(required_text("f", &"я".repeat(11), 10).is_err());
        assert!(required_text("f", &"я".repeat(10), 10).is_ok());
        assert_eq!(optional_text("b", "  ", 10).ok(), Some(""));
        // PostgreSQL text cannot hold NUL: a 400 here, not a failed query.
        assert!(required_text("f", "a\0b", 10).is_err());
        assert!(optional_text("b", "\0", 10).is_err());
    }

    #[test]
    fn birthdate_rules() {
        assert!(birthdate("1990-02-28").is_ok());
        assert!(birthdate("1990-02-30").is_err());
        assert!(birthdate("28.02.1990").is_err());
        assert!(birthdate("1800-01-01").is_err());
        assert!(birthdate("2999-01-01").is_err());
    }

    #[test]
    fn password_and_post_rules() {
        assert!(password("1234567").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"x".repeat(129)).is_err());
        assert!(post_text("").is_err());
        assert!(post_text(" \n").is_err());
        assert!(post_text(&"ж".repeat(10_000)).is_ok());
        assert!(post_text(&"ж".repeat(10_001)).is_err());
        assert!(post_text("nul \0 inside").is_err());
    }

    #[test]
    fn page_rules() {
        assert_eq!(page(None, None).ok(), Some((0, 10)));
        assert!(page(Some(-1), None).is_err());
        assert!(page(None, Some(0)).is_err());
        assert!(page(None, Some(1001)).is_err());
        assert_eq!(page(Some(5), Some(1000)).ok(), Some((5, 1000)));
    }
}
