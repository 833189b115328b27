//! The key set: which JWKS entries are usable, and which key checks a token.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::token::quote;

/// The algorithms a token may be signed with (docs/security.md, "Bearer tokens").
pub(super) const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The accepted algorithms an RSA key without `alg` may verify.
const RSA_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256];

/// One usable public key of the set.
pub(super) struct Key {
    /// The JWK `kid`, if any.
    kid: Option<String>,
    /// The accepted algorithms this key verifies: the JWK's `alg`, or its family's.
    algorithms: Vec<Algorithm>,
    /// The key itself.
    pub(super) decoding: DecodingKey,
}

/// The usable keys of a JWKS document.
pub(super) struct KeySet {
    keys: Vec<Key>,
}

/// What [`KeySet::select`] found for a token.
pub(super) enum Selected<'a> {
    /// The key to verify the token with.
    Key(&'a Key),
    /// The token names a `kid` the set does not have.
    UnknownKid,
    /// No key may verify the token; why.
    Refused(String),
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). `kty: oct` entries are ignored; other
    /// unusable entries (unsupported type, curve or `alg`, encryption keys, bad key material) are
    /// skipped with a warning.
    ///
    /// # Errors
    /// What is wrong, when the document is not a JWKS or holds no usable key.
    pub(super) fn parse(json: &[u8], location: &str) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not valid JSON: {e}"))?;
        let entries = doc.get("keys").and_then(Value::as_array).ok_or("not a JWKS: no \"keys\" array")?;
        let mut keys = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match usable_key(entry) {
                Ok(Some(key)) => keys.push(key),
                Ok(None) => {}
                Err(why) => skipped.push(format!("key #{index}: {why}")),
            }
        }
        if keys.is_empty() {
            let mut detail = "no usable key (RSA, or EC on P-256/P-384)".to_owned();
            if !skipped.is_empty() {
                detail = format!("{detail}; {}", skipped.join("; "));
            }
            return Err(detail);
        }
        for why in skipped {
            tracing::warn!(jwks = location, "ignoring a JWKS entry: {why}");
        }
        Ok(KeySet { keys })
    }

    /// How many usable keys the set has.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token with header `kid` and `alg` (an [`ACCEPTED`] algorithm): the key
    /// named `kid` that verifies `alg`; without `kid`, the only key verifying `alg`.
    pub(super) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected<'_> {
        let Some(kid) = kid else {
            let mut fitting = self.keys.iter().filter(|k| k.algorithms.contains(&alg));
            return match (fitting.next(), fitting.next()) {
                (Some(key), None) => Selected::Key(key),
                (None, _) => Selected::Refused(format!("no key id, and no key verifies {alg:?}")),
                (Some(_), Some(_)) => {
                    Selected::Refused(format!("no key id, and several keys verify {alg:?}"))
                }
            };
        };
        let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
        if named.peek().is_none() {
            return Selected::UnknownKid;
        }
        match named.find(|k| k.algorithms.contains(&alg)) {
            Some(key) => Selected::Key(key),
            None => Selected::Refused(format!("key id {} does not verify {alg:?}", quote(kid))),
        }
    }
}

/// The key of one JWKS entry: `None` for a `kty: oct` entry (never an HMAC secret).
///
/// # Errors
/// Why the entry cannot be used.
fn usable_key(entry: &Value) -> Result<Option<Key>, String> {
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Ok(None);
    }
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| format!("malformed: {e}"))?;
    let kid = jwk.common.key_id.clone();
    let name = || kid.as_deref().map(|k| format!(" ({})", quote(k))).unwrap_or_default();
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err(format!("not a signature key{}", name()));
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err(format!("key_ops does not include verify{}", name()));
    }
    let algorithms = key_algorithms(&jwk).map_err(|why| format!("{why}{}", name()))?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad key material{}: {e}", name()))?;
    Ok(Some(Key { kid, algorithms, decoding }))
}

/// The accepted algorithms a JWK verifies: its `alg` when set (and fitting its type), else all
/// those of its type (RSA: RS256/384/512, PS256; EC: ES256 on P-256, ES384 on P-384).
fn key_algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        _ => return Err("unsupported key type (only RSA and EC keys)".to_owned()),
    };
    let Some(declared) = jwk.common.key_algorithm else {
        return Ok(family);
    };
    match Algorithm::try_from(declared) {
        Ok(alg) if family.contains(&alg) => Ok(vec![alg]),
        _ => Err(format!("unsupported alg {declared} for this key")),
    }
}
