//! Reading a token: its header, its signature and time claims, and the identity it carries.

use std::str::FromStr;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::JwtConfig;
use super::keys::{ACCEPTED, Key};
use crate::{AuthError, Identity};

/// The longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The header fields used to pick the key.
pub(super) struct TokenHeader {
    /// The signature algorithm, one of [`ACCEPTED`].
    pub(super) alg: Algorithm,
    /// The key id, if any.
    pub(super) kid: Option<String>,
}

/// The header as written, before `alg` is checked.
#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// Makes sure jsonwebtoken has a crypto provider: the `rust_crypto` one, unless one is already
/// there (picked from the crate features, or installed by the application).
pub(super) fn ensure_crypto_provider() {
    if CryptoProvider::try_get_default().is_none() {
        // Fails only when another thread installed one meanwhile, which is as good.
        let _already = CryptoProvider::install_default(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
    }
}

/// [`AuthError::InvalidCredentials`] with `detail`.
pub(super) fn refused(detail: impl Into<String>) -> AuthError {
    AuthError::InvalidCredentials(detail.into())
}

/// `s`, quoted and escaped for a log line, cut to 64 characters.
pub(super) fn quote(s: &str) -> String {
    let mut short: String = s.chars().take(64).collect();
    if short.len() < s.len() {
        short.push('…');
    }
    format!("{short:?}")
}

/// Reads the header of a compact JWS without verifying anything, and checks its algorithm.
///
/// # Errors
/// [`AuthError::InvalidCredentials`]: too long, not three base64url parts, a header that is
/// not JSON, or an algorithm outside [`ACCEPTED`] (`none`, `HS256`, ...).
pub(super) fn peek_header(token: &str) -> Result<TokenHeader, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(refused(format!("malformed token: longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("malformed token: not three dot-separated parts"));
    };
    let json = base64url_decode(head).ok_or_else(|| refused("malformed token: header is not base64url"))?;
    let raw: RawHeader =
        serde_json::from_slice(&json).map_err(|_| refused("malformed token: header is not a JWS header"))?;
    let name = raw.alg.ok_or_else(|| refused("malformed token: header has no alg"))?;
    match Algorithm::from_str(&name) {
        Ok(alg) if ACCEPTED.contains(&alg) => Ok(TokenHeader { alg, kid: raw.kid }),
        _ => Err(refused(format!("unsupported algorithm {}", quote(&name)))),
    }
}

/// Verifies the signature of `token` with `key` and its claims (`exp` required, `nbf`, `iss`
/// and `aud` as configured), and returns the claims.
///
/// # Errors
/// [`AuthError::InvalidCredentials`] saying what failed ([`describe`]).
pub(super) fn decode(token: &str, key: &Key, alg: Algorithm, config: &JwtConfig) -> Result<Value, AuthError> {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    if config.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audiences);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
        .map_err(|e| refused(describe(&e)))?;
    // jsonwebtoken also accepts an array `iss` containing the issuer; the rule is equality.
    if let Some(issuer) = &config.issuer
        && data.claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
    {
        return Err(refused("wrong issuer"));
    }
    Ok(data.claims)
}

/// What a jsonwebtoken error means for the caller's token.
fn describe(e: &Error) -> String {
    match e.kind() {
        ErrorKind::ExpiredSignature => "token expired (exp is past)".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid (nbf is in the future)".to_owned(),
        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
        ErrorKind::InvalidSignature => "bad signature".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing required claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        ErrorKind::InvalidAlgorithm => "algorithm does not fit the key".to_owned(),
        ErrorKind::InvalidKeyFormat | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            format!("the key cannot verify this token: {e}")
        }
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "malformed token".to_owned()
        }
        _ => format!("token refused: {e}"),
    }
}

/// The identity in verified claims: the user from [`JwtConfig::user_claim`] (a non-empty
/// string), the groups from [`JwtConfig::groups_claim`] (an array of strings, or absent).
///
/// # Errors
/// [`AuthError::InvalidCredentials`] for a missing, empty or non-string user claim, or a groups
/// claim that is not an array of strings.
pub(super) fn identity(claims: &Value, config: &JwtConfig) -> Result<Identity, AuthError> {
    let user_claim = &config.user_claim;
    let user = match claims.get(user_claim) {
        Some(Value::String(user)) if !user.is_empty() => user.clone(),
        Some(Value::String(_)) => return Err(refused(format!("empty user claim {user_claim}"))),
        Some(_) => return Err(refused(format!("user claim {user_claim} is not a string"))),
        None => return Err(refused(format!("missing user claim {user_claim}"))),
    };
    let groups_claim = &config.groups_claim;
    let not_strings = || refused(format!("groups claim {groups_claim} is not an array of strings"));
    let groups = match claims.get(groups_claim) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(not_strings)?,
        Some(_) => return Err(not_strings()),
    };
    Ok(Identity { user, groups })
}

/// Decodes unpadded base64url (RFC 4648 §5), as JWS uses; `None` for anything else.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_known_values() {
        assert_eq!(base64url_decode("eyJhbGciOiJub25lIn0").as_deref(), Some(&br#"{"alg":"none"}"#[..]));
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(base64url_decode(""), Some(Vec::new()));
        assert_eq!(base64url_decode("ab=="), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("a\"b"), r#""a\"b""#);
        assert_eq!(quote(&"k".repeat(100)), format!("{:?}", format!("{}…", "k".repeat(64))));
    }
}
