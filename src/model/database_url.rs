//! Where the jobs live: a database URL, its grammar, and how it shows in logs (without its
//! password).

use std::fmt;
use std::path::PathBuf;

use super::Malformed;

/// The database URLs accepted, shown in error messages.
pub const URL_FORM: &str =
    "use sqlite://relative/path, sqlite:///absolute/path, postgres://…, postgresql://… or mysql://user[:pw]@host[:port]/db";

/// Where the jobs live, chosen by the URL's scheme (see [`DatabaseUrl::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://relative/path` or `sqlite:///absolute/path`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, kept whole for libpq.
    Postgres(String),
    /// `mysql://user[:password]@host[:port]/database` (MySQL 8.0.1+ or MariaDB 10.6+), kept
    /// whole; `mariadb://…` is accepted and kept as `mysql://…`. It parses in every build;
    /// connecting needs the `mysql` cargo feature.
    Mysql(String),
}

impl DatabaseUrl {
    /// Parses a database URL, choosing the backend by its scheme: `sqlite://relative/path`,
    /// `sqlite:///absolute/path`, `postgres://…`, `postgresql://…`, `mysql://…` or `mariadb://…`.
    ///
    /// The error names the unsupported scheme and lists the accepted ones.
    ///
    /// ```
    /// use std::path::PathBuf;
    /// use solidq::DatabaseUrl;
    ///
    /// assert_eq!(DatabaseUrl::parse("sqlite://data/jobs.db"), Ok(DatabaseUrl::Sqlite(PathBuf::from("data/jobs.db"))));
    /// assert_eq!(DatabaseUrl::parse("sqlite:///var/lib/jobs.db"), Ok(DatabaseUrl::Sqlite(PathBuf::from("/var/lib/jobs.db"))));
    /// assert_eq!(DatabaseUrl::parse("mariadb://db/jobs"), Ok(DatabaseUrl::Mysql("mysql://db/jobs".into())));
    /// assert!(DatabaseUrl::parse("oracle://db/jobs").unwrap_err().contains("\"oracle\""));
    /// ```
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        DatabaseUrl::parse_detailed(text).map_err(|malformed| malformed.to_string())
    }

    /// [`DatabaseUrl::parse`], with the problem and the accepted form apart.
    pub fn parse_detailed(text: &str) -> Result<DatabaseUrl, Malformed> {
        parse_url(text)
    }
}

fn parse_url(text: &str) -> Result<DatabaseUrl, Malformed> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(Malformed::new("is not a URL with a scheme", URL_FORM));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            if rest.is_empty() {
                Err(Malformed::new("has an empty SQLite path", URL_FORM))
            } else if rest.ends_with('/') {
                Err(Malformed::new("names a directory, not a SQLite file", URL_FORM))
            } else {
                Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
            }
        }
        "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(text.to_string())),
        // diesel's MySQL URL parser knows the `mysql` scheme only.
        "mysql" | "mariadb" => Ok(DatabaseUrl::Mysql(format!("mysql://{rest}"))),
        _ => Err(Malformed::new(format!("has unsupported scheme {scheme:?}"), URL_FORM)),
    }
}

/// `text` with the password of a URL (in `user:password@` or a `password=` parameter)
/// replaced by `***`. Text that is not a URL comes back unchanged.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let after_scheme = scheme_end + 3;
    let authority_len = text[after_scheme..].find(['/', '?', '#']).unwrap_or(text.len() - after_scheme);
    let authority = &text[after_scheme..after_scheme + authority_len];
    let mut out = text[..after_scheme].to_string();
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            match userinfo.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:***@{host}")),
                None => out.push_str(authority),
            };
        }
        None => out.push_str(authority),
    }
    let tail = &text[after_scheme + authority_len..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => param.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

impl fmt::Display for DatabaseUrl {
    /// The URL with any password replaced by `***`, safe for logs and status output.
    ///
    /// ```
    /// use solidq::DatabaseUrl;
    ///
    /// let url = DatabaseUrl::parse("postgres://app:s3cret@db:5432/jobs").unwrap();
    /// assert_eq!(url.to_string(), "postgres://app:***@db:5432/jobs");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) | DatabaseUrl::Mysql(url) => f.write_str(&redact_url(url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(DatabaseUrl::parse("sqlite://solidq.sqlite3"), Ok(DatabaseUrl::Sqlite("solidq.sqlite3".into())));
        assert_eq!(DatabaseUrl::parse("sqlite:///tmp/x.db"), Ok(DatabaseUrl::Sqlite("/tmp/x.db".into())));
        assert_eq!(
            DatabaseUrl::parse("postgresql://u:p@h/d"),
            Ok(DatabaseUrl::Postgres("postgresql://u:p@h/d".into()))
        );
        assert!(DatabaseUrl::parse("sqlite://").unwrap_err().contains("empty"));
        assert!(DatabaseUrl::parse("sqlite:///").is_err());
        assert!(DatabaseUrl::parse("solidq.sqlite3").is_err());
        assert_eq!(DatabaseUrl::parse("mysql://u:p@h:3306/d"), Ok(DatabaseUrl::Mysql("mysql://u:p@h:3306/d".into())));
        assert_eq!(DatabaseUrl::parse("MariaDB://h/d"), Ok(DatabaseUrl::Mysql("mysql://h/d".into())));
        assert_eq!(DatabaseUrl::Mysql("mysql://u:p@h/d".into()).to_string(), "mysql://u:***@h/d");
        let err = DatabaseUrl::parse("oracle://u:p@h/d").unwrap_err();
        assert!(err.contains("\"oracle\"") && err.contains("postgresql://") && err.contains("mysql://"), "{err}");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/jobs?sslmode=require"),
            "postgres://app:***@db:5432/jobs?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/jobs?password=s3cret&x=1"), "postgres://app@db/jobs?password=***&x=1");
        assert_eq!(redact_url("postgres://db/jobs"), "postgres://db/jobs");
        assert_eq!(redact_url("postgres://a:b:c@d@h"), "postgres://a:***@h");
        assert_eq!(redact_url("plain"), "plain");
        let sqlite = DatabaseUrl::Sqlite("/var/x.db".into());
        assert_eq!(sqlite.to_string(), "sqlite:///var/x.db");
    }
}
