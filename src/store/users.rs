//! Queries on `users`: registration, lookup, credentials and the name-prefix search.

use diesel::dsl::{self, exists};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::models::{NewUser, User};
use super::schema::users;
use super::StoreError;

define_sql_function!(fn lower(x: Text) -> Text);

pub async fn insert(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> Result<(), StoreError> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn exists_by_id(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, StoreError> {
    Ok(diesel::select(exists(users::table.find(id)))
        .get_result(conn)
        .await?)
}

pub async fn password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(users::table
        .find(id)
        .select(users::password_hash)
        .first(conn)
        .await
        .optional()?)
}

/// Escapes LIKE's wildcards so user input only ever matches literally.
pub fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for ch in prefix.to_lowercase().chars() {
        if matches!(ch, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

/// Case-insensitive prefix search on both names, ordered by id, at most `limit` rows.
///
/// Served by `users_name_prefix_idx` (lower(name) text_pattern_ops): the LIKE prefixes become
/// an index range. On 100,000 users (`EXPLAIN`, see also the README and `tests/it/store.rs`):
///
/// ```text
/// Limit
///   ->  Sort  (Sort Key: id)
///         ->  Bitmap Heap Scan on users
///               Filter: ((lower(first_name) ~~ 'name12%') AND (lower(second_name) ~~ 'surname1%'))
///               ->  Bitmap Index Scan on users_name_prefix_idx
///                     Index Cond: ((lower(first_name) ~>=~ 'name12') AND (lower(first_name) ~<~ 'name13')
///                             AND (lower(second_name) ~>=~ 'surname1') AND (lower(second_name) ~<~ 'surname2'))
/// ```
pub async fn search(
    conn: &mut AsyncPgConnection,
    first_name: &str,
    second_name: &str,
    limit: i64,
) -> Result<Vec<User>, StoreError> {
    Ok(
        search_query(like_prefix(first_name), like_prefix(second_name), limit)
            .load(conn)
            .await?,
    )
}

/// The search's query (given LIKE patterns), separate so its plan can be checked as diesel
/// really writes it.
#[dsl::auto_type(no_type_alias)]
pub fn search_query(first_pattern: String, second_pattern: String, limit: i64) -> _ {
    let columns: dsl::AsSelect<User, Pg> = User::as_select();
    users::table
        .filter(lower(users::first_name).like(first_pattern))
        .filter(lower(users::second_name).like(second_pattern))
        .order(users::id)
        .limit(limit)
        .select(columns)
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefix_escapes_wildcards_and_lowercases() {
        assert_eq!(like_prefix("Ab%_\\"), "ab\\%\\_\\\\%");
        assert_eq!(like_prefix("Иван"), "иван%");
    }
}
