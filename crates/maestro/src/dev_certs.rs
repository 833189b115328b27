//! `maestro dev-certs`: a throw-away PKI for trying mutual TLS on one machine (docs/security.md,
//! "Trying it"): a CA, a server certificate, one client certificate per agent (CN = consumer
//! name, O = `agents`) and per source (CN = source id, O = `sources`), the matching policy
//! file and an agent gRPC config per consumer. Not for production: the keys are written
//! unencrypted and the CA key sits next to them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose,
};

/// `maestro dev-certs` flags.
#[derive(Debug, Clone, Args)]
pub struct DevCertsArgs {
    /// Directory to write into (created if missing; existing files are overwritten).
    #[arg(long, default_value = "dev-certs")]
    pub out: PathBuf,
    /// Names the server certificate is valid for (DNS names or IP addresses).
    #[arg(long = "host", value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub hosts: Vec<String>,
    /// Consumers to issue agent certificates for (CN = the consumer name).
    #[arg(long = "consumer", value_delimiter = ',', default_value = "cluster1")]
    pub consumers: Vec<String>,
    /// Sources to issue client certificates for (CN = the source id); each may act as itself.
    #[arg(long = "source", value_delimiter = ',', default_value = "maestro-cli")]
    pub sources: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// Writes the PKI and prints what was written.
///
/// # Errors
/// A name rcgen refuses, or a file that cannot be written.
pub fn run(a: &DevCertsArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let ca = new_ca(a.days)?;
    write(&a.out, "ca.crt", &ca.pem())?;
    let server = leaf(&a.hosts, a.hosts.first().map_or("maestro", String::as_str), None, true, a.days)?;
    write_pair(&a.out, "server", &server, &ca)?;
    for consumer in &a.consumers {
        let cert = leaf(&[], consumer, Some("agents"), false, a.days)?;
        let (crt, key) = write_pair(&a.out, consumer, &cert, &ca)?;
        let config = agent_config(&a.hosts, &a.out.join("ca.crt"), &crt, &key);
        write(&a.out, &format!("{consumer}-agent.yaml"), &config)?;
    }
    for source in &a.sources {
        let cert = leaf(&[], source, Some("sources"), false, a.days)?;
        write_pair(&a.out, source, &cert, &ca)?;
    }
    write(&a.out, "policy.yaml", &policy(&a.sources))?;
    println!(
        "wrote a development PKI to {} (CA, server, {} agent and {} source certificates, policy.yaml)",
        a.out.display(),
        a.consumers.len(),
        a.sources.len()
    );
    Ok(())
}

fn new_ca(days: u32) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "maestro development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, days);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A leaf's parameters: a server certificate for `sans`, or a client certificate with subject
/// CN `cn` and O `org`.
fn leaf(
    sans: &[String],
    cn: &str,
    org: Option<&str>,
    server: bool,
    days: u32,
) -> anyhow::Result<CertificateParams> {
    let mut params =
        CertificateParams::new(sans.to_vec()).with_context(|| format!("certificate names {sans:?}"))?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    if let Some(org) = org {
        params.distinguished_name.push(DnType::OrganizationName, org);
    }
    params.extended_key_usages =
        vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
    validity(&mut params, days);
    Ok(params)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Signs `params` with a new key and writes `<name>.crt` and `<name>.key`.
fn write_pair(
    dir: &Path,
    name: &str,
    params: &CertificateParams,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca).with_context(|| format!("signing {name}"))?;
    Ok((
        write(dir, &format!("{name}.crt"), &cert.pem())?,
        write(dir, &format!("{name}.key"), &key.serialize_pem())?,
    ))
}

fn write(dir: &Path, name: &str, content: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if name.ends_with(".key") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(path)
}

/// An agent's gRPC config (sdk-go keys) for the broker on the first host, port 8091.
fn agent_config(hosts: &[String], ca: &Path, cert: &Path, key: &Path) -> String {
    let host = hosts.first().map_or("localhost", String::as_str);
    format!(
        "url: {host}:8091\ncaFile: {}\nclientCertFile: {}\nclientKeyFile: {}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

/// A policy letting each source certificate act as its own source.
fn policy(sources: &[String]) -> String {
    let mut out =
        String::from("# Written by `maestro dev-certs` (docs/security.md, \"Policy file\").\nsources:\n");
    for s in sources {
        out.push_str(&format!("  - name: {s}\n    verbs: [pub, sub]\n    users: [{s}]\n"));
    }
    out.push_str("# Agents: the certificate CN names the consumer (the default rule).\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pki_loads_and_names_its_identities() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("certs");
        let args = DevCertsArgs {
            out: out.clone(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            consumers: vec!["cluster1".into(), "cluster2".into()],
            sources: vec!["maestro-cli".into()],
            days: 1,
        };
        run(&args).expect("writes");
        let files = maestro_tls::ServerTlsFiles {
            cert: out.join("server.crt"),
            key: out.join("server.key"),
            client_ca: Some(out.join("ca.crt")),
        };
        let tls = maestro_tls::ReloadingServerTls::start(
            files,
            maestro_tls::ClientAuth::Required,
            maestro_tls::RELOAD_INTERVAL,
        )
        .await;
        assert!(tls.is_ok(), "the server pair and CA load: {:?}", tls.err());
        for (file, user, group) in
            [("cluster2.crt", "cluster2", "agents"), ("maestro-cli.crt", "maestro-cli", "sources")]
        {
            let pem = std::fs::read_to_string(out.join(file)).expect("cert");
            let id =
                maestro_tls::peer_identity(&maestro_tls::testing::first_cert_der(&pem)).expect("identity");
            assert_eq!((id.user.as_str(), id.groups.as_slice()), (user, &[group.to_owned()][..]));
        }
        let policy =
            maestro_auth::policy::Policy::from_file(&out.join("policy.yaml")).expect("policy parses");
        let source = maestro_auth::Identity { user: "maestro-cli".into(), groups: vec![] };
        assert!(policy.may_act_as_source(&source, "maestro-cli", maestro_auth::policy::SourceVerb::Pub));
        let agent = std::fs::read_to_string(out.join("cluster1-agent.yaml")).expect("agent config");
        assert!(agent.contains("clientCertFile:") && agent.contains("cluster1.crt"), "{agent}");
    }
}
