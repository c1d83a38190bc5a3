//! `platformctl operations show ID`: a long-running operation's state, step and progress.

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::json;
use tenancy::catalog::operations::OperationRow;

use super::{Output, finish, start};

pub async fn show(id: &str, out: &Output) -> anyhow::Result<ExitCode> {
    let id = tenancy::ids::OperationId::parse(id).context("the operation id is not a UUID")?;
    let started = start().await?;
    let op = started.tenancy.catalog.operation(id).await?;
    let code = match op {
        Some(op) => {
            print_operation(&op, out);
            ExitCode::SUCCESS
        }
        None => {
            out.emit(
                &json!({"id": id, "error": "no such operation"}),
                "no such operation",
            );
            ExitCode::FAILURE
        }
    };
    finish(started)?;
    Ok(code)
}

/// One line per operation state.
pub fn print_operation(op: &OperationRow, out: &Output) {
    out.emit(
        &json!({"id": op.id, "kind": op.kind, "state": op.state, "step": op.step, "progress": op.progress, "error": op.error}),
        &format!(
            "{} {} {}: {} at {}{}",
            op.kind,
            op.tenant_id,
            op.id,
            op.state,
            op.step,
            op.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    );
}
