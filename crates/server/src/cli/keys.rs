//! `regkeeper key …`: the master key's status, its rotation and moving the keyring
//! between a key file and AWS KMS, for site administrators.

use regkeeper_client::Client;
use regkeeper_wire as wire;

use super::output;
use super::{KeyCommand, OutputFormat};

pub(super) fn run(client: &Client, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Status { output } => {
            let status: wire::KeyStatus = client.get("/api/v1/admin/master-key")?;
            if output.output == OutputFormat::Json {
                return output::json(&status);
            }
            match (status.current_version, status.reason) {
                (Some(version), _) => println!("Master key available, current version {version}."),
                (None, reason) => output::line(&format!(
                    "Master key unavailable: {}",
                    reason.unwrap_or_default()
                )),
            }
            if let Some(home) = &status.home {
                output::line(&format!("Keyring kept in: {home}"));
            }
            if let Some(mismatch) = &status.settings_mismatch {
                output::line(&format!("Warning: {mismatch}"));
            }
            if let Some(migration) = &status.migration {
                output::line(&format!("Migration under way: {migration}"));
            }
            if let Some(problem) = status.key_file_problem {
                // The server still serves from memory: say so, and that a restart or a
                // rotation would act on a different file.
                println!(
                    "Warning: the master key file no longer holds the loaded keys ({problem}); key rotate is refused until the original file is back or the server restarts on the new one."
                );
            }
            Ok(())
        }
        KeyCommand::Rotate {
            skip_unreadable,
            output,
        } => {
            let rotation: wire::KeyRotation = client.post(
                "/api/v1/admin/master-key/rotate",
                &wire::KeyRotateInput { skip_unreadable },
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&rotation);
            }
            println!(
                "Master key rotated from version {} to {}; {} data keys re-wrapped.",
                rotation.previous_version, rotation.current_version, rotation.rewrapped
            );
            for label in &rotation.skipped {
                println!("Left as it was (cannot be opened): {label}");
            }
            Ok(())
        }
        KeyCommand::Migrate {
            to_kms,
            to_file,
            skip_unreadable,
            output,
        } => {
            // A relative path would be the server's working directory, not the caller's.
            let to_file = to_file
                .map(|path| {
                    let path = std::path::PathBuf::from(path);
                    if path.is_absolute() {
                        Ok(path.display().to_string())
                    } else {
                        Err(anyhow::anyhow!(
                            "--to-file: give an absolute path on the server (got {})",
                            path.display()
                        ))
                    }
                })
                .transpose()?;
            let migration: wire::KeyMigration = client.post(
                "/api/v1/admin/master-key/migrate",
                &wire::KeyMigrateInput {
                    to_kms,
                    to_file,
                    skip_unreadable,
                },
            )?;
            if output.output == OutputFormat::Json {
                return output::json(&migration);
            }
            output::line(&format!(
                "Keyring {} {}: master key version {} made there (previous {}); {} data keys re-wrapped.",
                if migration.resumed { "move finished, now in" } else { "moved to" },
                migration.to,
                migration.current_version,
                migration.previous_version,
                migration.rewrapped
            ));
            for label in &migration.skipped {
                output::line(&format!("Left as it was (cannot be opened): {label}"));
            }
            Ok(())
        }
    }
}
