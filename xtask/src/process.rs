//! Running the commands a task is made of: each step announces itself in one line first, and a
//! failing command stops the task with the command's text in the error.

use std::io::Write as _;
use std::process::Command;

/// Announces a step.
pub fn step(what: &str) {
    println!("xtask: {what}");
    std::io::stdout().flush().ok();
}

/// The command as a shell would show it (program and arguments; no environment).
pub fn show(c: &Command) -> String {
    let program = c.get_program().to_string_lossy();
    // `cargo` reached through $CARGO is a full path; the short name reads better.
    let program = if c.get_program() == std::env::var_os("CARGO").unwrap_or_default().as_os_str() {
        "cargo".into()
    } else {
        program
    };
    std::iter::once(program)
        .chain(c.get_args().map(|a| a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion; an error if it could not start or did not succeed.
pub fn run(c: &mut Command) -> Result<(), String> {
    let status = c
        .status()
        .map_err(|e| format!("could not start `{}`: {e}", show(c)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(c)))
    }
}

/// Replaces this process with the command (the last step of a task), so its exit code, its
/// signals (Ctrl-C, SIGTERM to the process id) and its output are the command's own.
pub fn exec(c: &mut Command) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = c.exec();
        Err(format!("could not start `{}`: {e}", show(c)))
    }
    #[cfg(not(unix))]
    {
        let status = c
            .status()
            .map_err(|e| format!("could not start `{}`: {e}", show(c)))?;
        std::process::exit(status.code().unwrap_or(1))
    }
}
