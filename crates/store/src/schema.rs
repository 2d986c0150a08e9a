//! The schema, as migrations: those written once for both databases
//! (`migrations/common/`) merged with the ones only one database needs
//! (`migrations/sqlite/`, `migrations/postgres/`), applied in version order.

use sqlx::migrate::{Migration, Migrator};

use crate::dialect::Backend;

static COMMON: Migrator = sqlx::migrate!("./migrations/common");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// Every migration of `backend`, in version order.
pub(crate) fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(migrations(backend))
}

fn migrations(backend: Backend) -> Vec<Migration> {
    let own = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    COMMON.iter().chain(own.iter()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_version_is_written_in_one_place_per_database() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let mut versions: Vec<i64> = migrations(backend).iter().map(|m| m.version).collect();
            let all = versions.len();
            versions.sort();
            versions.dedup();
            assert_eq!(
                versions.len(),
                all,
                "{backend:?}: a version is both common and the database's own"
            );
        }
    }

    #[test]
    fn both_databases_have_the_same_versions() {
        let versions = |backend| {
            let mut v: Vec<i64> = migrations(backend).iter().map(|m| m.version).collect();
            v.sort();
            v
        };
        assert_eq!(versions(Backend::Sqlite), versions(Backend::Postgres));
    }
}
