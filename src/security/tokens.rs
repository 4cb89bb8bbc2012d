//! Client tokens: `--auth-token-file` holds lines of `TOKEN ROLE`; a call
//! carries `authorization: Bearer TOKEN`. Lookups compare every token in
//! constant time; tokens are kept only as SHA-256 digests and never logged.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::SecurityError;

/// What a client may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Get, List (and Watch), and GetClusterStatus.
    Reader = 1,
    /// Also Create, Update and Delete.
    Writer = 2,
    /// Also the membership, leadership and backup calls.
    Admin = 3,
}

impl Role {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Role::Reader),
            2 => Some(Role::Writer),
            3 => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The tokens of one `--auth-token-file`, as digests.
#[derive(Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Role)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenTable({} tokens)", self.entries.len())
    }
}

impl TokenTable {
    /// Reads `path`: one `TOKEN ROLE` a line; blank lines and `#` comments skipped.
    pub fn from_file(path: &Path) -> Result<Self, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            what: "--auth-token-file",
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, reason)| SecurityError::TokenLine {
            path: path.display().to_string(),
            line,
            reason,
        })
    }

    /// Parses a token file's text; an error names the line (1-based) and why.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut entries: Vec<([u8; 32], Role)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(token), Some(role), None) = (words.next(), words.next(), words.next()) else {
                return Err((line_no, "expected `TOKEN ROLE`".into()));
            };
            let role = Role::parse(role).ok_or_else(|| {
                (
                    line_no,
                    format!("unknown role {role:?} (reader, writer or admin)"),
                )
            })?;
            if token.len() < 16 {
                return Err((
                    line_no,
                    "the token must be at least 16 characters (it could be guessed)".into(),
                ));
            }
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if entries.iter().any(|(d, _)| *d == digest) {
                return Err((line_no, "this token appears twice".into()));
            }
            entries.push((digest, role));
        }
        if entries.is_empty() {
            return Err((0, "the file names no token".into()));
        }
        Ok(Self { entries })
    }

    /// The role of `token`, comparing against every known token in constant time.
    pub fn role_of(&self, token: &[u8]) -> Option<Role> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found = 0u8;
        for (known, role) in &self.entries {
            let hit = known.ct_eq(&digest);
            found = u8::conditional_select(&found, &(*role as u8), hit);
        }
        Role::from_code(found)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token of an `authorization: Bearer TOKEN` value, if it is one.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    let value = value.trim_ascii();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_and_finds_tokens() {
        let table = TokenTable::parse(
            "# ops\nreader-token-0123456 reader\n\nwriter-token-0123456   writer\nadmin-token-01234567 admin\n",
        )
        .unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.role_of(b"reader-token-0123456"), Some(Role::Reader));
        assert_eq!(table.role_of(b"writer-token-0123456"), Some(Role::Writer));
        assert_eq!(table.role_of(b"admin-token-01234567"), Some(Role::Admin));
        assert_eq!(table.role_of(b"admin-token-0123456"), None);
        assert_eq!(table.role_of(b""), None);
        assert!(Role::Reader < Role::Writer && Role::Writer < Role::Admin);
    }

    #[test]
    fn refuses_bad_lines_naming_them() {
        assert_eq!(TokenTable::parse("").unwrap_err().0, 0);
        let err =
            TokenTable::parse("good-token-0123456 reader\nx-token-0123456789 root\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(err.1.contains("root"), "{err:?}");
        assert_eq!(TokenTable::parse("short reader").unwrap_err().0, 1);
        assert_eq!(TokenTable::parse("only-a-token-0123456").unwrap_err().0, 1);
        let twice = "same-token-01234567 reader\nsame-token-01234567 admin";
        assert_eq!(TokenTable::parse(twice).unwrap_err().0, 2);
        // Never echo a token back in an error.
        let err = TokenTable::parse("secret-token-0123456 superuser").unwrap_err();
        assert!(!err.1.contains("secret-token"), "{err:?}");
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }
}
