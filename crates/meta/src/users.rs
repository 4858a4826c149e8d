//! Users: who may read what is served, with a role. Only hashes are kept: an argon2 hash
//! (checked at login) and a SCRAM-SHA-256 verifier (the Postgres wire's authentication).

use serde::Serialize;

use crate::db::vals;
use crate::{MetaStore, Result};

/// A user, without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub name: String,
    /// `admin` or `bi_reader`.
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

/// What a user's password is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSecrets {
    /// Argon2 in PHC string form.
    pub password_hash: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL keeps it.
    pub scram: String,
}

impl MetaStore {
    /// Add a user; false when one of that name exists (nothing changed).
    pub fn add_user(
        &self,
        name: &str,
        role: &str,
        secrets: &UserSecrets,
        now: &str,
    ) -> Result<bool> {
        let n = self.conn()?.execute(
            "INSERT INTO users (name, role, password_hash, scram, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
            vals![name, role, secrets.password_hash, secrets.scram, now],
        )?;
        Ok(n == 1)
    }

    /// Replace a user's password; false when there is no such user.
    pub fn set_password(&self, name: &str, secrets: &UserSecrets, now: &str) -> Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE users SET password_hash = ?2, scram = ?3, updated_at = ?4 WHERE name = ?1",
            vals![name, secrets.password_hash, secrets.scram, now],
        )?;
        Ok(n == 1)
    }

    /// Remove a user; false when there is no such user.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()?
            .execute("DELETE FROM users WHERE name = ?1", vals![name])?;
        Ok(n == 1)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        self.conn()?
            .query(
                "SELECT name, role, created_at, updated_at FROM users ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })
            .collect()
    }

    /// A user and what their password is checked against.
    pub fn user(&self, name: &str) -> Result<Option<(UserRecord, UserSecrets)>> {
        self.conn()?
            .query_opt(
                "SELECT name, role, created_at, updated_at, password_hash, scram
                 FROM users WHERE name = ?1",
                vals![name],
            )?
            .map(|r| {
                Ok((
                    UserRecord {
                        name: r.get(0)?,
                        role: r.get(1)?,
                        created_at: r.get(2)?,
                        updated_at: r.get(3)?,
                    },
                    UserSecrets {
                        password_hash: r.get(4)?,
                        scram: r.get(5)?,
                    },
                ))
            })
            .transpose()
    }
}
