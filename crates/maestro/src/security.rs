//! `maestro server`'s authentication and authorization flags and the [`Gates`] built from them
//! (docs/security.md).
//!
//! Each listener has its own authentication type (`--grpc-authn-type` for the source gRPC API,
//! as Go Maestro; `--grpc-broker-authn-type` for the agent broker; `--http-authn-type` for
//! REST). When a listener's type is not given it is `mtls` if that listener verifies client
//! certificates (a client CA is configured) and `none` otherwise. All listeners share one
//! policy file (`--authz-policy-file`) and one JWT key set (`--jwks-file` / `--jwks-url`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use maestro_auth::jwt::{JwksSource, JwtConfig, JwtVerifier};
use maestro_auth::kube::KubeReviewer;
use maestro_auth::policy::{Policy, PolicyHandle};
use maestro_auth::{AuthnType, Gate};

/// How often the policy file is checked for changes.
const POLICY_RELOAD: Duration = Duration::from_secs(5);

/// The security flags of `maestro server`.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// How sources authenticate on the source gRPC API: `mtls` (client certificate: user = CN,
    /// groups = O), `token` (bearer JWT checked against --jwks-file/--jwks-url) or `none`
    /// (Go's `mock` is read as `none`). Default: `mtls` with --grpc-client-ca-file, else `none`.
    #[arg(long, env = "MAESTRO_GRPC_AUTHN_TYPE", value_name = "TYPE", value_parser = parse_authn)]
    pub grpc_authn_type: Option<AuthnType>,
    /// How agents authenticate on the agent broker (`--broker grpc`): `mtls`, `token` or
    /// `none`. Default: `mtls` with --grpc-broker-client-ca-file, else `none`. An authenticated
    /// agent may act only as its own consumer (the certificate CN or token user, or a
    /// `consumers` entry of the policy).
    #[arg(long, env = "MAESTRO_GRPC_BROKER_AUTHN_TYPE", value_name = "TYPE", value_parser = parse_authn)]
    pub grpc_broker_authn_type: Option<AuthnType>,
    /// How REST callers authenticate: `token` (`Authorization: Bearer <JWT>`), `mtls` (client
    /// certificate, needs --https-client-ca-file) or `none`. Default: `mtls` with
    /// --https-client-ca-file, else `none`.
    #[arg(long, env = "MAESTRO_HTTP_AUTHN_TYPE", value_name = "TYPE", value_parser = parse_authn)]
    pub http_authn_type: Option<AuthnType>,
    /// PEM CA file that signs REST client certificates (with --enable-https): every REST
    /// client must then present one.
    #[arg(long, env = "MAESTRO_HTTPS_CLIENT_CA_FILE", value_name = "PATH")]
    pub https_client_ca_file: Option<PathBuf>,
    /// The authorization policy (YAML; docs/security.md "Policy file"): which identities may act
    /// as which sources, which consumer an agent identity is, and REST roles. Re-read when it
    /// changes. Without it: agents may act only as the consumer their identity names; no source
    /// and no REST caller is allowed on an authenticated listener.
    #[arg(long, env = "MAESTRO_AUTHZ_POLICY_FILE", value_name = "PATH")]
    pub authz_policy_file: Option<PathBuf>,
    /// JWKS file with the keys bearer tokens are signed with (RS256/ES256 and friends);
    /// re-read when it changes.
    #[arg(long, env = "MAESTRO_JWKS_FILE", value_name = "PATH", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (e.g. an OIDC provider's `jwks_uri`), re-fetched every 5 minutes and when a
    /// token names an unknown key.
    #[arg(long, env = "MAESTRO_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Required `iss` of bearer tokens.
    #[arg(long, env = "MAESTRO_JWT_ISSUER", value_name = "ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` of bearer tokens (repeatable; any one must match). Without it `aud` is
    /// not checked.
    #[arg(
        long = "jwt-audience",
        env = "MAESTRO_JWT_AUDIENCE",
        value_name = "AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audiences: Vec<String>,
    /// The claim holding a token's user name.
    #[arg(long, env = "MAESTRO_JWT_USER_CLAIM", value_name = "CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// Kubeconfig of the Kubernetes API that reviews source gRPC callers, as Go Maestro's flag:
    /// `token` callers are authenticated by a TokenReview, and sources authorized by a
    /// SubjectAccessReview (`pub`/`sub` on the non-resource URL `/sources/<source>`) instead of
    /// the policy file. `in-cluster` uses the pod's service account.
    #[arg(long, env = "MAESTRO_GRPC_AUTHORIZER_CONFIG", value_name = "PATH")]
    pub grpc_authorizer_config: Option<PathBuf>,
    /// The claim holding a token's groups (an array of strings).
    #[arg(long, env = "MAESTRO_JWT_GROUPS_CLAIM", value_name = "CLAIM", default_value = "groups")]
    pub jwt_groups_claim: String,
}

impl Default for SecurityArgs {
    /// Every listener `none` unless it has a client CA; no policy file; no key set.
    fn default() -> SecurityArgs {
        SecurityArgs {
            grpc_authn_type: None,
            grpc_broker_authn_type: None,
            http_authn_type: None,
            https_client_ca_file: None,
            authz_policy_file: None,
            jwks_file: None,
            jwks_url: None,
            jwt_issuer: None,
            jwt_audiences: Vec::new(),
            jwt_user_claim: "sub".to_owned(),
            jwt_groups_claim: "groups".to_owned(),
            grpc_authorizer_config: None,
        }
    }
}

fn parse_authn(s: &str) -> Result<AuthnType, String> {
    s.parse().map_err(|e: maestro_auth::AuthError| e.to_string())
}

/// Whether each listener verifies client certificates (has a client CA).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCas {
    /// REST (`--https-client-ca-file`).
    pub http: bool,
    /// Source gRPC (`--grpc-client-ca-file`).
    pub grpc: bool,
    /// Agent broker (`--grpc-broker-client-ca-file`).
    pub broker: bool,
}

/// The gates of the three listeners.
#[derive(Debug, Clone)]
pub struct Gates {
    /// REST.
    pub http: Gate,
    /// Source gRPC.
    pub grpc: Gate,
    /// Agent broker.
    pub broker: Gate,
}

impl Default for Gates {
    fn default() -> Gates {
        Gates { http: Gate::open(), grpc: Gate::open(), broker: Gate::open() }
    }
}

impl SecurityArgs {
    /// Builds the gates (must run inside the tokio runtime: the policy and key set are
    /// watched by background tasks).
    ///
    /// # Errors
    /// `mtls` on a listener without a client CA; `token` without a key set; a policy file or
    /// key set that cannot be loaded.
    pub async fn gates(&self, cas: ClientCas) -> anyhow::Result<Gates> {
        let types = [
            ("REST (--http-authn-type)", self.http_authn_type, cas.http, "--https-client-ca-file"),
            ("source gRPC (--grpc-authn-type)", self.grpc_authn_type, cas.grpc, "--grpc-client-ca-file"),
            (
                "agent broker (--grpc-broker-authn-type)",
                self.grpc_broker_authn_type,
                cas.broker,
                "--grpc-broker-client-ca-file",
            ),
        ];
        let mut resolved = Vec::with_capacity(3);
        for (name, given, has_ca, ca_flag) in types {
            let authn = given.unwrap_or(if has_ca { AuthnType::Mtls } else { AuthnType::None });
            if authn == AuthnType::Mtls && !has_ca {
                bail!("{name} is mtls but no client CA verifies certificates: set {ca_flag}");
            }
            resolved.push(authn);
        }
        let policy = self.policy()?;
        let kube_grpc = self.grpc_authorizer_config.is_some();
        let needs_jwt =
            resolved.iter().enumerate().any(|(i, a)| *a == AuthnType::Token && !(i == 1 && kube_grpc));
        let jwt = if needs_jwt { Some(self.jwt().await?) } else { None };
        let gate = |authn: AuthnType| -> anyhow::Result<Gate> {
            let jwt = jwt.clone().filter(|_| authn == AuthnType::Token);
            Ok(Gate::new(authn, jwt, policy.clone())?)
        };
        let grpc = match &self.grpc_authorizer_config {
            Some(path) => {
                let path = (path.as_os_str() != "in-cluster").then_some(path.as_path());
                let reviewer =
                    KubeReviewer::from_kubeconfig(path).await.context("--grpc-authorizer-config")?;
                Gate::kubernetes(resolved[1], reviewer, policy.clone())
            }
            None => gate(resolved[1])?,
        };
        Ok(Gates { http: gate(resolved[0])?, grpc, broker: gate(resolved[2])? })
    }

    fn policy(&self) -> anyhow::Result<PolicyHandle> {
        match &self.authz_policy_file {
            Some(path) => {
                Ok(PolicyHandle::watch(path, POLICY_RELOAD).context("loading --authz-policy-file")?)
            }
            None => Ok(PolicyHandle::fixed(Policy::default())),
        }
    }

    async fn jwt(&self) -> anyhow::Result<JwtVerifier> {
        let jwks = match (&self.jwks_file, &self.jwks_url) {
            (Some(file), _) => JwksSource::File(file.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            (None, None) => bail!("token authentication needs a key set: --jwks-file or --jwks-url"),
        };
        let mut config = JwtConfig::new(jwks);
        config.issuer = self.jwt_issuer.clone();
        config.audiences = self.jwt_audiences.clone();
        config.user_claim = self.jwt_user_claim.clone();
        config.groups_claim = self.jwt_groups_claim.clone();
        JwtVerifier::start(config).await.context("loading the JWT key set")
    }
}
