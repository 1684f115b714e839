//! The `regkeeper` binary: the server (`serve`) and the command-line client.

fn main() -> std::process::ExitCode {
    regkeeper::cli::main()
}
