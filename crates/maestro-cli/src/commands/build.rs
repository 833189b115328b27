//! `build`: merge the given manifests into the stored work on the client, by identity
//! (group, version, kind, namespace, name; [`maestro_api::merge::overlay`]), then print the
//! resulting ManifestWork or publish it with `--apply` at the version read, so a change made
//! by someone else in between is a conflict (exit 4), never lost.
//!
//! The REST view does not carry a work's executor, so a work built from it has none: works
//! that need an executor should use `apply --merge` (the server keeps it).

use std::io::Write;

use anyhow::Context as _;
use maestro_api::merge::overlay;
use maestro_api::payload::ManifestBundle;
use maestro_client::{ApplyOptions, ManifestWorkInput, ResourceBundle, manifestwork, resource_id};
use serde_json::{Value, json};

use crate::cli::{BuildArgs, OutputFormat};
use crate::commands::{Context, Outcome, report};
use crate::results::ResultStatus;

/// Runs `build`; with `--apply` also writes the `--results-path` file.
///
/// # Errors
/// Manifest file errors, REST errors, a stored bundle that cannot be read back as a bundle,
/// and (with `--apply`) publish errors and conflicts.
pub(crate) async fn run(ctx: &Context, args: &BuildArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let given = manifestwork::read(&args.manifest_file, args.name.as_deref())?;
    if !args.apply {
        let (built, _) = build(ctx, &args.consumer, given).await?;
        return print(ctx.output, &built, &args.consumer, out);
    }
    let name = given.name.clone();
    let outcome = build_and_apply(ctx, args, given, out).await;
    report(ctx, args.results.results_path.as_deref(), &name, &args.consumer, outcome).await
}

/// Builds the work and publishes it at the version read.
async fn build_and_apply(
    ctx: &Context,
    args: &BuildArgs,
    given: ManifestWorkInput,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let (built, read_version) = build(ctx, &args.consumer, given).await?;
    let client = ctx.source().await?;
    let options = ApplyOptions { expected_version: read_version, ..Default::default() };
    let outcome = client.apply_with(&args.consumer, &built, &options).await?;
    let version = outcome.version.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    let message = format!(
        "resource bundle {} built with {} manifest(s) and applied on consumer {} at version {version}",
        built.name,
        built.bundle.manifests.len(),
        args.consumer
    );
    writeln!(out, "{message}")?;
    Ok(Outcome::new(ResultStatus::InProgress, message))
}

/// The stored work with `given` merged in, and the version read (`None` when the work does
/// not exist yet: `given` as it is).
async fn build(
    ctx: &Context,
    consumer: &str,
    given: ManifestWorkInput,
) -> anyhow::Result<(ManifestWorkInput, Option<i64>)> {
    let id = resource_id(&ctx.source_id, consumer, &given.name);
    let Some(stored) = ctx.rest()?.find_bundle(&id).await? else { return Ok((given, None)) };
    let current = stored_bundle(&stored)?;
    let mut built = ManifestWorkInput {
        name: given.name.clone(),
        labels: stored.labels(),
        annotations: string_map(stored.metadata.get("annotations")),
        bundle: overlay(&current, &given.bundle),
    };
    built.labels.extend(given.labels);
    built.annotations.extend(given.annotations);
    Ok((built, Some(stored.version)))
}

/// The bundle of a REST resource bundle (manifests, manifest configs, delete option).
fn stored_bundle(b: &ResourceBundle) -> anyhow::Result<ManifestBundle> {
    let spec = json!({
        "manifests": b.manifests,
        "manifestConfigs": b.manifest_configs,
        "deleteOption": b.delete_option.clone().filter(|d| d.as_object().is_some_and(|o| !o.is_empty())),
    });
    serde_json::from_value(spec).with_context(|| format!("reading the stored resource bundle {}", b.id))
}

/// A JSON object of strings as a map (other values are skipped).
fn string_map(v: Option<&Value>) -> std::collections::BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// The work as a ManifestWork object.
fn manifestwork_object(work: &ManifestWorkInput, consumer: &str) -> Value {
    let mut metadata = json!({"name": work.name, "namespace": consumer});
    if !work.labels.is_empty() {
        metadata["labels"] = json!(work.labels);
    }
    if !work.annotations.is_empty() {
        metadata["annotations"] = json!(work.annotations);
    }
    let mut spec = json!({"workload": {"manifests": work.bundle.manifests}});
    if let Some(d) = &work.bundle.delete_option {
        spec["deleteOption"] = json!(d);
    }
    if !work.bundle.manifest_configs.is_empty() {
        spec["manifestConfigs"] = json!(work.bundle.manifest_configs);
    }
    json!({
        "apiVersion": maestro_client::manifestwork::MANIFESTWORK_API_VERSION,
        "kind": maestro_client::manifestwork::MANIFESTWORK_KIND,
        "metadata": metadata,
        "spec": spec,
    })
}

/// Prints the built ManifestWork: JSON with `-o json`, else YAML (ready for `apply -f`).
fn print(
    format: OutputFormat,
    work: &ManifestWorkInput,
    consumer: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let object = manifestwork_object(work, consumer);
    if format == OutputFormat::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&object)?)?;
    } else {
        write!(out, "{}", serde_yaml_ng::to_string(&object)?)?;
    }
    Ok(())
}
