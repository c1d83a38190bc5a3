//! How the fleet-migration and promotion benchmarks print their result: a human-readable table,
//! or with `--json` one JSON object for scripts.

/// How to print results.
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints a JSON value as one line, or the human text.
    pub fn emit(&self, value: &serde_json::Value, human: &str) {
        if self.json {
            println!("{value}");
        } else {
            println!("{human}");
        }
    }
}
