//! Users and roles: passwords are hashed with argon2 for logins, and turned into the
//! SCRAM-SHA-256 verifier PostgreSQL keeps for the wire protocol; neither gives the password
//! back. Two built-in roles: `admin` (everything) and `bi_reader` (reads the gold layer only).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use strata_meta::UserSecrets;

/// The built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: every layer, the SQL explorer, run history.
    Admin,
    /// Reads the gold layer only (the BI tools' role).
    BiReader,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Admin, Role::BiReader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::BiReader => "bi_reader",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Iterations of SCRAM's PBKDF2 (PostgreSQL's default).
const SCRAM_ITERATIONS: u32 = 4096;

/// Shortest password taken.
pub const MIN_PASSWORD: usize = 8;

/// Whether `name` can be a user name (as PostgreSQL role names are written unquoted).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' || c == '-'
        });
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{name}` cannot be a user name: use lower-case letters, digits, `_`, `.` and `-`, starting with a letter (at most 63)"
        )),
    }
}

/// What to keep for `password`: its argon2 hash and its SCRAM-SHA-256 verifier.
pub fn secrets(password: &str) -> Result<UserSecrets, String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD} characters"
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    let password_hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| format!("cannot hash the password: {e}"))?
        .to_string();
    let mut scram_salt = [0u8; 16];
    OsRng.fill_bytes(&mut scram_salt);
    Ok(UserSecrets {
        password_hash,
        scram: scram_verifier(password, &scram_salt, SCRAM_ITERATIONS),
    })
}

/// Whether `password` is the one `secrets` were made from (argon2, constant time).
pub fn verify(password: &str, secrets: &UserSecrets) -> bool {
    PasswordHash::new(&secrets.password_hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// PostgreSQL's SCRAM-SHA-256 verifier of a password (RFC 5802, RFC 7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], text: &[u8]| -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(text);
        mac.finalize().into_bytes().to_vec()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let server_key = hmac(&salted, b"Server Key");
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_their_hash() {
        let s = secrets("correct horse").expect("secrets");
        assert!(s.password_hash.starts_with("$argon2"));
        assert!(!s.password_hash.contains("correct horse"));
        assert!(verify("correct horse", &s));
        assert!(!verify("correct hors", &s));
        assert!(secrets("short").is_err());
    }

    #[test]
    fn the_scram_verifier_has_postgresqls_form() {
        // That PostgreSQL accepts it is checked against a real server in the CLI's tests.
        let v = scram_verifier("pencil", b"0123456789abcdef", 4096);
        assert!(
            v.starts_with("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$"),
            "{v}"
        );
        let parts: Vec<&str> = v.rsplit('$').next().expect("keys").split(':').collect();
        assert_eq!(parts.len(), 2);
    }

    #[test]
    fn names_are_role_names() {
        assert!(check_name("bi_tool").is_ok());
        assert!(check_name("Admin").is_err());
        assert!(check_name("a b").is_err());
    }
}
