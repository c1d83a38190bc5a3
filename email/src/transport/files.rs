//! The embedded default with no transport configured: each message is written to
//! `<data dir>/mail/<message id>.eml` (signed, as it would be sent) for a developer to open.

use std::path::PathBuf;

use crate::compose::Outgoing;
use crate::transport::{Accepted, Provider, SendError, Via};

/// Writes `.eml` files.
#[derive(Clone, Debug)]
pub struct Files {
    dir: PathBuf,
}

impl Files {
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where the files go.
    #[must_use]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Provider for Files {
    async fn send(&self, m: &Outgoing) -> Result<Accepted, SendError> {
        let fail = |e: std::io::Error| SendError::Transient(format!("writing the .eml file: {e}"));
        tokio::fs::create_dir_all(&self.dir).await.map_err(fail)?;
        let path = self.dir.join(format!("{}.eml", m.id));
        // Written whole then renamed: a reader never sees half a message, and a retry replaces
        // the same file rather than adding one.
        let tmp = self.dir.join(format!(".{}.tmp", m.id));
        tokio::fs::write(&tmp, &m.raw).await.map_err(fail)?;
        tokio::fs::rename(&tmp, &path).await.map_err(fail)?;
        tracing::info!(email.id = %m.id, path = %path.display(), "email written to a file");
        Ok(Accepted {
            via: Via::File,
            provider_message_id: m.id.to_string(),
        })
    }
}
