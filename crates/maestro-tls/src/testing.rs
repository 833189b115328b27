//! Throw-away PKIs for tests (feature `test-support`): a CA, a second "foreign" CA, and server
//! and client certificates signed by them. Everything panics on failure: it is for tests only.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};

/// A PEM certificate and its PEM private key.
pub type CertAndKey = (String, String);

/// A test CA plus a second, unrelated ("foreign") CA.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    foreign: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

fn sign(params: &CertificateParams, issuer: &CertifiedIssuer<'static, KeyPair>) -> CertAndKey {
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

/// id-at-organizationName (2.5.4.10).
const ORGANIZATION_OID: [u64; 4] = [2, 5, 4, 10];

fn client_params(cn: &str, orgs: &[&str]) -> CertificateParams {
    // rcgen keeps one value per attribute type, so a second O is written under O's OID as a
    // custom type (it encodes identically); a third cannot be expressed.
    assert!(orgs.len() <= 2, "TestPki::client supports at most two organizations");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let types = [DnType::OrganizationName, DnType::CustomDnType(ORGANIZATION_OID.to_vec())];
    for (ty, org) in types.into_iter().zip(orgs) {
        params.distinguished_name.push(ty, *org);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

impl TestPki {
    /// Generates the CA and the foreign CA.
    pub fn new() -> Self {
        Self { ca: new_ca("maestro test CA"), foreign: new_ca("foreign test CA") }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The foreign CA certificate, PEM.
    pub fn foreign_ca_pem(&self) -> String {
        self.foreign.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the CN),
    /// signed by the CA, with a fresh key. Every call gives a new key and serial.
    pub fn server(&self, names: &[&str]) -> CertAndKey {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("server params");
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(&params, &self.ca)
    }

    /// A client certificate with subject CN `cn` and one O per `orgs` (at most two), signed by
    /// the CA.
    pub fn client(&self, cn: &str, orgs: &[&str]) -> CertAndKey {
        sign(&client_params(cn, orgs), &self.ca)
    }

    /// A client certificate signed by the CA that expired in 2001.
    pub fn expired_client(&self, cn: &str) -> CertAndKey {
        let mut params = client_params(cn, &[]);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        sign(&params, &self.ca)
    }

    /// A client certificate signed by the foreign CA.
    pub fn foreign_client(&self, cn: &str) -> CertAndKey {
        sign(&client_params(cn, &[]), &self.foreign)
    }

    /// A server certificate for `names` signed by the foreign CA, with an empty subject.
    pub fn foreign_server(&self, names: &[&str]) -> CertAndKey {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("server params");
        params.distinguished_name = DistinguishedName::new();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(&params, &self.foreign)
    }

    /// Writes the CA certificate to `dir/ca.crt` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        write_file(dir, "ca.crt", &self.ca_pem())
    }
}

/// Writes `content` to `dir/name` (replacing it) and returns the path.
pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// Writes a pair to `dir/{name}.crt` and `dir/{name}.key` and returns (cert path, key path).
pub fn write_pair(dir: &Path, name: &str, pair: &CertAndKey) -> (PathBuf, PathBuf) {
    (write_file(dir, &format!("{name}.crt"), &pair.0), write_file(dir, &format!("{name}.key"), &pair.1))
}

/// The DER of the first certificate of a PEM string.
pub fn first_cert_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate").to_vec()
}
