//! `maestro demo`: the main job end to end on embedded defaults. Starts a server on SQLite
//! with the gRPC broker (or the embedded MQTT broker, or the Pub/Sub emulator) and three agents on simulated clusters, applies the ManifestWorks of
//! `examples/`, waits until they are Applied and Available, prints a status table with the
//! feedback values, deletes one bundle, shows it gone, and exits 0.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use maestro_client::{BundleFilter, ResourceBundle, manifestwork};

use crate::broker::BrokerKind;
use crate::stack::{LocalStack, StackConfig};

/// The example ManifestWorks, embedded so the demo runs from any directory:
/// (file name, YAML, consumer).
pub const EXAMPLES: [(&str, &str, &str); 3] = [
    ("examples/web-app.yaml", include_str!("../../../examples/web-app.yaml"), "cluster-1"),
    ("examples/batch-job.yaml", include_str!("../../../examples/batch-job.yaml"), "cluster-2"),
    ("examples/namespace-rbac.yaml", include_str!("../../../examples/namespace-rbac.yaml"), "cluster-3"),
];

/// `maestro demo` flags.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Database URL; default: a SQLite file in a temporary directory.
    #[arg(long = "db", env = "MAESTRO_DEMO_DB_URL")]
    pub db_url: Option<String>,
    /// How long to wait for each step (e.g. `60s`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The broker between server and agents: `grpc` (server-hosted), `mqtt` (the embedded
    /// rumqttd, or `--mqtt-host`) or `pubsub` (the emulator at `--pubsub-endpoint`).
    #[arg(long, value_enum, default_value = "grpc")]
    pub broker: BrokerKind,
    /// With `--broker mqtt`: an external MQTT 5 broker `host:port` instead of the embedded one.
    #[arg(long)]
    pub mqtt_host: Option<String>,
    /// With `--broker pubsub`: a running Pub/Sub emulator `host:port`. Unset: the demo starts
    /// the emulator itself when its launcher (Debian package google-cloud-cli-pubsub-emulator)
    /// is installed.
    #[arg(long, env = "PUBSUB_EMULATOR_HOST")]
    pub pubsub_endpoint: Option<String>,
}

/// A running Pub/Sub emulator the demo started (kept alive by holding it).
#[cfg(feature = "pubsub")]
type Emulator = maestro_broker_pubsub::emulator::Emulator;
/// Without the `pubsub` feature the demo never starts an emulator.
#[cfg(not(feature = "pubsub"))]
type Emulator = ();

/// Resolves the Pub/Sub emulator: the given endpoint, or one started here (kept alive by the
/// returned handle).
#[cfg(not(feature = "pubsub"))]
async fn pubsub_emulator(endpoint: Option<String>) -> anyhow::Result<(Option<String>, Option<Emulator>)> {
    match endpoint {
        Some(ep) => Ok((Some(ep), None)),
        None => Err(crate::broker::BrokerError::NotBuilt("pubsub").into()),
    }
}

/// Resolves the Pub/Sub emulator: the given endpoint, or one started here (kept alive by the
/// returned handle).
#[cfg(feature = "pubsub")]
async fn pubsub_emulator(endpoint: Option<String>) -> anyhow::Result<(Option<String>, Option<Emulator>)> {
    if let Some(ep) = endpoint {
        return Ok((Some(ep), None));
    }
    println!("==> starting the Pub/Sub emulator (no --pubsub-endpoint given; takes a few seconds)");
    let emulator = maestro_broker_pubsub::emulator::Emulator::try_start()
        .await
        .map_err(|e| anyhow::anyhow!("{e}; or pass --pubsub-endpoint HOST:PORT of a running emulator"))?;
    Ok((Some(emulator.endpoint()), Some(emulator)))
}

/// Runs the demo.
///
/// # Errors
/// Any failed step, naming it.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = crate::scratch::ScratchDir::new("maestro-demo").context("creating a temporary directory")?;
    let db_url = args
        .db_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("maestro.db").display()));
    let mut config = StackConfig::new(&db_url);
    config.broker = args.broker;
    config.mqtt_host = args.mqtt_host.clone();
    let mut _emulator = None;
    if args.broker == BrokerKind::Pubsub {
        (config.pubsub_endpoint, _emulator) = pubsub_emulator(args.pubsub_endpoint.clone()).await?;
    }
    let broker = match (args.broker, &args.mqtt_host) {
        (BrokerKind::Mqtt, Some(h)) => format!("the MQTT broker at {h}"),
        (BrokerKind::Mqtt, None) => "an embedded MQTT broker".to_owned(),
        (BrokerKind::Pubsub, _) => {
            format!("the Pub/Sub emulator at {}", config.pubsub_endpoint.as_deref().unwrap_or_default())
        }
        (kind, _) => format!("the {} broker", kind.as_str()),
    };
    println!("==> starting a server ({}) with {broker}", maestro_store::redact(&db_url));
    let mut stack = LocalStack::start(config).await?;
    println!(
        "    REST {}  source gRPC {}  agent broker {}",
        stack.http_addr(),
        stack.grpc_addr(),
        stack.broker_addr()
    );
    let result = steps(&mut stack, args.timeout).await;
    stack.shutdown().await;
    result
}

async fn steps(stack: &mut LocalStack, timeout: Duration) -> anyhow::Result<()> {
    println!("==> registering 3 consumers and starting their agents (simulated clusters)");
    for (_, _, consumer) in EXAMPLES {
        stack
            .rest
            .create_consumer(consumer, &Default::default())
            .await
            .with_context(|| format!("creating consumer {consumer}"))?;
        stack.start_agent(consumer).await?;
    }
    println!("==> applying the examples");
    let mut applied = Vec::new();
    for (file, yaml, consumer) in EXAMPLES {
        let work = manifestwork::parse(file, yaml, None).with_context(|| format!("reading {file}"))?;
        let out = stack
            .source
            .apply(consumer, &work)
            .await
            .with_context(|| format!("applying {file} to {consumer}"))?;
        println!("    {file} -> {consumer} as {} ({} manifests)", work.name, work.bundle.manifests.len());
        applied.push((work.name, consumer, out.resource_id));
    }
    println!("==> waiting until every bundle is Applied and Available");
    let bundles = wait_available(stack, &applied, timeout).await?;
    print_table(&bundles);
    let (name, consumer, id) = &applied[1];
    println!("==> deleting {name} from {consumer}");
    stack.source.delete(consumer, name).await.with_context(|| format!("deleting {name}"))?;
    wait_gone(stack, id, timeout).await?;
    let left = stack.rest.all_bundles(&BundleFilter::default()).await?;
    println!(
        "    {name} is gone: the agent removed its resources and confirmed; {} bundles remain",
        left.len()
    );
    println!("==> demo complete");
    Ok(())
}

async fn wait_available(
    stack: &LocalStack,
    applied: &[(String, &str, String)],
    timeout: Duration,
) -> anyhow::Result<Vec<ResourceBundle>> {
    let start = Instant::now();
    let mut last_ready = usize::MAX;
    loop {
        let mut bundles = Vec::new();
        for (_, _, id) in applied {
            bundles.push(stack.rest.get_bundle(id).await?);
        }
        let ready = bundles
            .iter()
            .filter(|b| b.is_true_at_current_version("Applied") && b.is_true_at_current_version("Available"))
            .count();
        if ready != last_ready {
            println!("    {ready}/{} Available ({:.1}s)", bundles.len(), start.elapsed().as_secs_f64());
            last_ready = ready;
        }
        if ready == bundles.len() {
            return Ok(bundles);
        }
        if start.elapsed() > timeout {
            let pending: Vec<String> = bundles
                .iter()
                .filter(|b| !b.is_true("Available"))
                .map(|b| format!("{} ({})", b.name, b.condition_summary()))
                .collect();
            bail!("timed out after {timeout:?} waiting for Available: {}", pending.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_gone(stack: &LocalStack, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if stack.rest.find_bundle(id).await?.is_none() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for bundle {id} to be deleted");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn print_table(bundles: &[ResourceBundle]) {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["BUNDLE", "CONSUMER", "VERSION", "APPLIED", "AVAILABLE", "FEEDBACK"]);
    for b in bundles {
        let feedback: Vec<String> =
            b.feedback().iter().map(|f| format!("{} {}={}", f.resource, f.name, f.value)).collect();
        let cond = |ty: &str| b.condition(ty).map(|c| c.status.clone()).unwrap_or_else(|| "-".into());
        t.add_row([
            b.name.clone(),
            b.consumer_name.clone(),
            b.version.to_string(),
            cond("Applied"),
            cond("Available"),
            if feedback.is_empty() { "-".into() } else { feedback.join("\n") },
        ]);
    }
    println!("{t}");
}
