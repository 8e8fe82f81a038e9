//! [`Moment`], the SQL type of every time column in `schema.rs`.
//!
//! diesel's `Timestamp` binds as `MYSQL_TYPE_TIMESTAMP` on MySQL, whose range ends in 2038: a
//! later value (a job scheduled far ahead, `latest_schedule()`) became NULL, or an error in a NOT
//! NULL column. `Moment` is `timestamp` on PostgreSQL, `Text` on SQLite (both as diesel's
//! `Timestamp`) and `DATETIME` on MySQL (as diesel's `Datetime`, 1000-01-01 to 9999-12-31), and
//! maps to [`NaiveDateTime`] (UTC) on each.
//!
//! A `NaiveDateTime` reads from a `Moment` column as it is, but is bound to one as [`At`]:
//! coherence forbids implementing diesel's `AsExpression<Moment>` for a foreign type that diesel
//! might one day make an expression itself.

use chrono::NaiveDateTime;
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::expression::AsExpression;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{HasSqlType, SqlOrd, Timestamp};
use diesel::{pg::Pg, sqlite::Sqlite};

use super::connection::MultiBackend;

/// A UTC date and time with microseconds (see the module documentation).
#[derive(Debug, Clone, Copy, Default, diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 1114, array_oid = 1115))]
#[diesel(sqlite_type(name = "Text"))]
#[diesel(mysql_type(name = "DateTime"))]
pub struct Moment;

impl SqlOrd for Moment {}

/// A time to bind as a [`Moment`] (`col.lt(at(now))`, the time fields of `Insertable` rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, AsExpression)]
#[diesel(sql_type = Moment)]
pub struct At(pub NaiveDateTime);

/// `time`, bound as a [`Moment`].
pub fn at(time: NaiveDateTime) -> At {
    At(time)
}

impl From<NaiveDateTime> for At {
    fn from(time: NaiveDateTime) -> Self {
        At(time)
    }
}

/// Implements `ToSql`/`FromSql<Moment, $backend>` by delegating to diesel's impls for `$inner`.
macro_rules! moment_via {
    ($backend:ty, $inner:ty) => {
        impl ToSql<Moment, $backend> for At {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, $backend>) -> serialize::Result {
                <NaiveDateTime as ToSql<$inner, $backend>>::to_sql(&self.0, out)
            }
        }

        impl ToSql<Moment, $backend> for NaiveDateTime {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, $backend>) -> serialize::Result {
                <NaiveDateTime as ToSql<$inner, $backend>>::to_sql(self, out)
            }
        }

        impl FromSql<Moment, $backend> for NaiveDateTime {
            fn from_sql(bytes: <$backend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                <NaiveDateTime as FromSql<$inner, $backend>>::from_sql(bytes)
            }
        }
    };
}

moment_via!(Pg, Timestamp);
moment_via!(Sqlite, Timestamp);
#[cfg(feature = "mysql")]
moment_via!(diesel::mysql::Mysql, diesel::sql_types::Datetime);

// `DbConnection`'s backend: each value is bound or read by the backend of the connection.
impl HasSqlType<Moment> for MultiBackend {
    fn metadata(lookup: &mut Self::MetadataLookup) -> Self::TypeMetadata {
        MultiBackend::lookup_sql_type::<Moment>(lookup)
    }
}

impl ToSql<Moment, MultiBackend> for NaiveDateTime {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Moment, self));
        Ok(IsNull::No)
    }
}

impl ToSql<Moment, MultiBackend> for At {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Moment, &self.0));
        Ok(IsNull::No)
    }
}

impl FromSql<Moment, MultiBackend> for NaiveDateTime {
    fn from_sql(bytes: <MultiBackend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        bytes.from_sql::<NaiveDateTime, Moment>()
    }
}
