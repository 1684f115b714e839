//! `docker-credential-regkeeper`: the docker credential helper; see
//! `regkeeper_consumers::docker_helper`.

use std::process::ExitCode;

// The entry point hands the system clock to the logic, which reads no clock itself.
#[allow(clippy::disallowed_methods)]
fn main() -> ExitCode {
    let action = std::env::args().nth(1);
    let status = regkeeper_consumers::docker_helper::main(
        action.as_deref(),
        &|name| std::env::var(name).ok(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &std::time::SystemTime::now,
    );
    ExitCode::from(status)
}
