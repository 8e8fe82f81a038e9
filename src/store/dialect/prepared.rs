//! PostgreSQL statements of fixed text that the connection prepares once and then reuses.
//!
//! diesel never caches a `sql_query` (its text could be anything), so every claim would be
//! parsed and planned again: about a millisecond per claim, as much as claiming a hundred jobs
//! costs. A [`Prepared`] statement is cached by its text and bind types, like diesel's own
//! query builder statements.

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp, Untyped};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

/// A bind parameter of a [`Prepared`] statement.
pub(crate) enum Bind<'a> {
    BigInt(i64),
    Timestamp(NaiveDateTime),
    Text(String),
    BigInts(Vec<i64>),
    Integers(Vec<i32>),
    Texts(Vec<&'a str>),
    NullableTimestamps(Vec<Option<NaiveDateTime>>),
}

/// SQL text with `$n` placeholders (each may appear more than once) and its binds.
pub(crate) struct Prepared<'a> {
    sql: String,
    binds: Vec<Bind<'a>>,
}

impl<'a> Prepared<'a> {
    /// `sql` with `binds` for `$1`, `$2`, …
    pub(crate) fn new(sql: impl Into<String>, binds: Vec<Bind<'a>>) -> Self {
        Prepared { sql: sql.into(), binds }
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // diesel numbers the placeholders itself, in the order binds are pushed: a `$n` used
        // twice is bound twice.
        let mut rest = self.sql.as_str();
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let index: usize = rest[at + 1..at + 1 + digits]
                .parse()
                .map_err(|_| diesel::result::Error::QueryBuilderError("a `$` without a number".into()))?;
            let bind = self
                .binds
                .get(index.wrapping_sub(1))
                .ok_or_else(|| diesel::result::Error::QueryBuilderError(format!("no bind for ${index}").into()))?;
            match bind {
                Bind::BigInt(value) => out.push_bind_param::<BigInt, _>(value)?,
                Bind::Timestamp(value) => out.push_bind_param::<Timestamp, _>(value)?,
                Bind::Text(value) => out.push_bind_param::<Text, _>(value)?,
                Bind::BigInts(values) => out.push_bind_param::<Array<BigInt>, _>(values)?,
                Bind::Integers(values) => out.push_bind_param::<Array<Integer>, _>(values)?,
                Bind::Texts(values) => out.push_bind_param::<Array<Text>, _>(values)?,
                Bind::NullableTimestamps(values) => out.push_bind_param::<Array<Nullable<Timestamp>>, _>(values)?,
            }
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    // No static id: the cache keys it by its SQL text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for Prepared<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_in_order_and_repeated_ones_bound_again() {
        let statement = Prepared::new("SELECT $2, $1, $2", vec![Bind::BigInt(1), Bind::Text("two".into())]);
        let sql = diesel::debug_query::<Pg, _>(&statement).to_string();
        assert!(sql.starts_with("SELECT $1, $2, $3 -- binds: [\"two\", 1, \"two\"]"), "{sql}");
    }

    #[test]
    fn a_missing_bind_is_an_error_not_a_panic() {
        let statement = Prepared::new("SELECT $3", vec![Bind::BigInt(1)]);
        let mut sql = String::new();
        let result = QueryFragment::<Pg>::to_sql(
            &statement,
            &mut <Pg as diesel::backend::Backend>::QueryBuilder::default(),
            &Pg,
        );
        sql.push_str(&format!("{result:?}"));
        assert!(sql.contains("no bind for $3"), "{sql}");
    }
}
