//! Mosquitto password files, as `mosquitto_passwd` writes them, so one file serves Mosquitto
//! and the embedded broker:
//!
//! - `user:$7$<iterations>$<salt b64>$<hash b64>`: PBKDF2-HMAC-SHA512 with a 64-byte hash
//!   (Mosquitto 2.x, `-H sha512-pbkdf2`, the default; 101 iterations and a 12-byte salt);
//! - `user:$6$<salt b64>$<hash b64>`: SHA-512 of the password followed by the salt (Mosquitto
//!   1.6 and earlier, `-H sha512`).
//!
//! Blank lines and lines starting with `#` are skipped. Plain-text passwords are refused (as
//! Mosquitto 2 does). A user may have several entries; any of them logs in. Verification is
//! constant-time (`ring`), and an unknown user costs as much as a known one.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use ring::{digest, pbkdf2, rand::SecureRandom};

/// The iteration count `mosquitto_passwd` 2.0 uses, and [`hash_password`] too.
pub const MOSQUITTO_ITERATIONS: u32 = 101;
/// The salt length `mosquitto_passwd` uses.
const SALT_BYTES: usize = 12;
/// The length of a PBKDF2-HMAC-SHA512 hash in a `$7$` entry.
const HASH_BYTES: usize = 64;

/// A password file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file cannot be read.
    #[error("cannot read the MQTT password file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a hashed `mosquitto_passwd` entry (the line itself is not repeated: it
    /// holds a password hash).
    #[error("MQTT password file line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        #[source]
        reason: EntryError,
    },
    /// No random bytes for a salt or a generated password.
    #[error("the system random number generator failed")]
    Random,
}

/// Why one entry of a password file is refused (the entry itself is never part of the
/// message: it holds a password hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The line has no `user:` prefix.
    #[error("no `user:` prefix")]
    NoUser,
    /// The user name before `:` is empty.
    #[error("empty user name")]
    EmptyUser,
    /// A base64 field (`salt` or `hash`) does not decode, or is empty.
    #[error("the {0} is not base64")]
    NotBase64(&'static str),
    /// The `$7$` iteration count is not a positive 32-bit number.
    #[error("invalid iteration count {0:?}")]
    IterationCount(String),
    /// The hash has the wrong length for its scheme.
    #[error("a ${scheme}$ hash has {HASH_BYTES} bytes, not {len}")]
    HashLength {
        /// The scheme: 7 (PBKDF2) or 6 (SHA-512).
        scheme: u8,
        /// The decoded length.
        len: usize,
    },
    /// Not a `$7$` or `$6$` hash (e.g. a plain-text password).
    #[error("not a hashed password ($7$… or $6$…); create it with mosquitto_passwd")]
    NotHashed,
}

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 { iterations: NonZeroU32, salt: Vec<u8>, hash: Vec<u8> },
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hash {
    fn parse(text: &str) -> Result<Hash, EntryError> {
        let b64 = |what: &'static str, s: &str| {
            crate::base64::decode(s).filter(|v| !v.is_empty()).ok_or(EntryError::NotBase64(what))
        };
        let fields: Vec<&str> = text.split('$').collect();
        match fields.as_slice() {
            ["", "7", iterations, salt, hash] => {
                let iterations = iterations
                    .parse::<u32>()
                    .ok()
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| EntryError::IterationCount((*iterations).to_owned()))?;
                let salt = b64("salt", salt)?;
                let hash = b64("hash", hash)?;
                if hash.len() != HASH_BYTES {
                    return Err(EntryError::HashLength { scheme: 7, len: hash.len() });
                }
                Ok(Hash::Pbkdf2 { iterations, salt, hash })
            }
            ["", "6", salt, hash] => {
                let salt = b64("salt", salt)?;
                let hash = b64("hash", hash)?;
                if hash.len() != HASH_BYTES {
                    return Err(EntryError::HashLength { scheme: 6, len: hash.len() });
                }
                Ok(Hash::Sha512 { salt, hash })
            }
            _ => Err(EntryError::NotHashed),
        }
    }

    /// Constant-time check of `password` against this hash.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Pbkdf2 { iterations, salt, hash } => {
                pbkdf2::verify(pbkdf2::PBKDF2_HMAC_SHA512, *iterations, salt, password, hash).is_ok()
            }
            Hash::Sha512 { salt, hash } => {
                let mut ctx = digest::Context::new(&digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                let computed = ctx.finish();
                // Every byte is compared (no early exit), so the time does not depend on where
                // the first difference is.
                computed.as_ref().len() == hash.len()
                    && computed.as_ref().iter().zip(hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
            }
        }
    }
}

/// The users of a Mosquitto password file.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Vec<Hash>>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("PasswordFile").field("users", &users).finish()
    }
}

impl PasswordFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`PasswordFileError::Read`] or [`PasswordFileError::Line`].
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PasswordFileError::Read { path: path.to_owned(), source })?;
        PasswordFile::parse(&text)
    }

    /// Parses the text of a password file.
    ///
    /// # Errors
    /// [`PasswordFileError::Line`] for a line that is not `user:<hash>` with a `$7$` or `$6$`
    /// hash, or has an empty user name.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut file = PasswordFile::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: EntryError| PasswordFileError::Line { line: i + 1, reason };
            let (user, hash) = line.split_once(':').ok_or_else(|| bad(EntryError::NoUser))?;
            if user.is_empty() {
                return Err(bad(EntryError::EmptyUser));
            }
            file.users.entry(user.to_owned()).or_default().push(Hash::parse(hash).map_err(bad)?);
        }
        Ok(file)
    }

    /// Adds `user` with `password` (kept only as a PBKDF2 hash), e.g. an internal credential.
    ///
    /// # Errors
    /// [`PasswordFileError::Random`] when no salt can be drawn.
    pub fn add(&mut self, user: &str, password: &str) -> Result<(), PasswordFileError> {
        let entry = hash_password(password)?;
        let hash = Hash::parse(&entry).map_err(|reason| PasswordFileError::Line { line: 0, reason })?;
        self.users.entry(user.to_owned()).or_default().push(hash);
        Ok(())
    }

    /// True when `user` exists and `password` matches one of its entries. Unknown users are
    /// checked against a dummy hash, so they take as long as known ones.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hashes) => hashes.iter().fold(false, |ok, h| h.verify(password) | ok),
            None => {
                let _ = dummy().verify(password);
                false
            }
        }
    }

    /// The user names, sorted.
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        users
    }

    /// True when the file holds no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn dummy() -> Hash {
    Hash::Pbkdf2 {
        iterations: NonZeroU32::MIN.saturating_add(MOSQUITTO_ITERATIONS - 1),
        salt: vec![0; SALT_BYTES],
        hash: vec![0; HASH_BYTES],
    }
}

/// Random bytes from the system generator.
///
/// # Errors
/// [`PasswordFileError::Random`].
pub fn random_bytes<const N: usize>() -> Result<[u8; N], PasswordFileError> {
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| PasswordFileError::Random)?;
    Ok(bytes)
}

/// `$7$101$<salt>$<hash>` for `password` with a fresh random salt: what `mosquitto_passwd -b`
/// writes after `user:`.
///
/// # Errors
/// [`PasswordFileError::Random`].
pub fn hash_password(password: &str) -> Result<String, PasswordFileError> {
    let salt = random_bytes::<SALT_BYTES>()?;
    let iterations = NonZeroU32::MIN.saturating_add(MOSQUITTO_ITERATIONS - 1);
    let mut hash = [0u8; HASH_BYTES];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA512, iterations, &salt, password.as_bytes(), &mut hash);
    Ok(format!("$7${MOSQUITTO_ITERATIONS}${}${}", crate::base64::encode(&salt), crate::base64::encode(&hash)))
}

/// A random password: 32 random bytes in base64.
///
/// # Errors
/// [`PasswordFileError::Random`].
pub fn random_password() -> Result<String, PasswordFileError> {
    Ok(crate::base64::encode(&random_bytes::<32>()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Written by `mosquitto_passwd -b` 2.0.11 (`-H sha512-pbkdf2`, then `-H sha512`), password
    /// `secret` for both.
    const MOSQUITTO: &str = "# comment\n\
        cluster-a:$7$101$PW2eCk232/1g+bLl$truEcUAE8Hj/yNKt8JBqeQ5mK39NaGb3bWECLiqge00XSMjEnP5xQEjvys0yzazjPtoVUnPEV9JAtWqgij+krQ==\n\
        \n\
        old:$6$y+Y5URVlQwymO5rw$NJnezX+qNKASlIeP9Wjqb73pL2VVFbsZrHpp9cHESgCA6Rxl+r5TXrY8cF83g7n5+ks3PL75HeIlhitXqOJjNw==\n";

    #[test]
    fn reads_mosquitto_passwd_output() {
        let file = PasswordFile::parse(MOSQUITTO).unwrap();
        assert_eq!(file.users(), vec!["cluster-a", "old"]);
        assert!(file.verify("cluster-a", b"secret"));
        assert!(file.verify("old", b"secret"));
        assert!(!file.verify("cluster-a", b"Secret"));
        assert!(!file.verify("cluster-a", b""));
        assert!(!file.verify("old", b"secret "));
        assert!(!file.verify("nobody", b"secret"));
        assert!(!format!("{file:?}").contains("PW2eCk"), "Debug must not show hashes");
    }

    #[test]
    fn generated_entries_verify_and_can_be_added() {
        let entry = hash_password("pa:ss$word").unwrap();
        assert!(entry.starts_with("$7$101$"), "{entry}");
        let mut file = PasswordFile::parse(&format!("maestro:{entry}\n")).unwrap();
        assert!(file.verify("maestro", b"pa:ss$word"));
        assert!(!file.verify("maestro", b"other"));
        file.add("maestro", "second").unwrap();
        assert!(file.verify("maestro", b"second") && file.verify("maestro", b"pa:ss$word"));
        assert_ne!(random_password().unwrap(), random_password().unwrap());
    }

    #[test]
    fn refuses_what_is_not_a_hashed_entry() {
        for (text, want) in [
            ("cluster-a", "no `user:`"),
            (":$7$101$PW2eCk232/1g+bLl$AAAA", "empty user"),
            ("cluster-a:secret", "not a hashed password"),
            ("cluster-a:$7$0$PW2eCk232/1g+bLl$AAAA", "iteration"),
            ("cluster-a:$7$101$PW2eCk232/1g+bLl$AAAA", "64 bytes"),
            ("cluster-a:$7$101$!!$AAAA", "salt"),
        ] {
            let err = PasswordFile::parse(&format!("# x\n{text}\n")).unwrap_err().to_string();
            assert!(err.contains("line 2") && err.contains(want), "{text}: {err}");
        }
        assert!(PasswordFile::parse("").unwrap().is_empty());
    }
}
