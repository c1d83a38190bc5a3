//! `platformctl tenants promote|demote|move|purge-source`. Without `--follow` the operation is
//! recorded and a running server picks it up within seconds; with it, this process runs it and
//! prints each step.

use std::process::ExitCode;
use tenancy::catalog::operations::OperationState;

use anyhow::Context as _;
use serde_json::json;
use tenancy::placement::MoveRequest;

use crate::commands::operations::print_operation;
use crate::commands::{Output, finish, start};

pub async fn run(
    slug: &str,
    to: MoveRequest,
    follow: bool,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let t = &started.tenancy;
    let tenant = t
        .catalog
        .tenant_by_slug(slug)
        .await?
        .with_context(|| format!("no tenant `{slug}`"))?;
    let op = t.mover.start(&tenant, &to).await?;
    print_operation(&op, out);
    if !follow {
        finish(started)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Print each step as it changes while the runner works.
    let catalog = t.catalog.clone();
    let id = op.id;
    let json_out = out.json;
    let watcher = tokio::spawn(async move {
        let printer = Output { json: json_out };
        let mut last = None;
        loop {
            if let Ok(Some(o)) = catalog.operation(id).await
                && last != Some(o.step)
            {
                last = Some(o.step);
                print_operation(&o, &printer);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let end = t.mover.run(op.id).await;
    watcher.abort();
    let end = end?;
    print_operation(&end, out);
    finish(started)?;
    Ok(if end.state == OperationState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn purge_source(slug: &str, out: &Output) -> anyhow::Result<ExitCode> {
    let started = start().await?;
    let t = &started.tenancy;
    let tenant = t
        .catalog
        .tenant_by_slug(slug)
        .await?
        .with_context(|| format!("no tenant `{slug}`"))?;
    let purged = t.mover.purge_source(&tenant).await?;
    out.emit(
        &json!({"tenant": slug, "purged_operation": purged}),
        &match purged {
            Some(id) => format!("{slug}: removed the source copy left by operation {id}"),
            None => format!("{slug}: no source copy to remove"),
        },
    );
    finish(started)?;
    Ok(ExitCode::SUCCESS)
}
