//! `cohortctl`: Cohort's console client.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "cohortctl: the console lands with cohortd's console server; nothing to connect to in this build"
    );
    ExitCode::from(64)
}
