//! `regkeeper-kubelet-credential-provider`: the kubelet image credential provider; see
//! `regkeeper_consumers::kubelet`. `regkeeper kubelet-credential-provider` is the same.

use std::process::ExitCode;

// The entry point hands the system clock to the logic, which reads no clock itself.
#[allow(clippy::disallowed_methods)]
fn main() -> ExitCode {
    if let Some(text) =
        regkeeper_consumers::kubelet::information(std::env::args().nth(1).as_deref())
    {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let status = regkeeper_consumers::kubelet::main(
        &|name| std::env::var(name).ok(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &std::time::SystemTime::now,
    );
    ExitCode::from(status)
}
