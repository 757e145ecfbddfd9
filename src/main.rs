//! `jointeval`: serve the API, migrate the database, print the contract, verify the
//! audit trail.

mod admin;
mod audit;
mod cli;
mod database;
mod serve;
mod telemetry;

use clap::Parser;

use crate::cli::{AdminCommand, AuditCommand, Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Migrate(args) => database::migrate_and_exit(&args).await,
        Command::Admin(AdminCommand::Bootstrap(args)) => admin::bootstrap_and_exit(&args).await,
        Command::Admin(AdminCommand::RotateSigningKey(args)) => {
            admin::rotate_signing_key_and_exit(&args).await
        }
        Command::Audit(AuditCommand::Verify(args)) => audit::verify_and_exit(&args).await,
        Command::Openapi => {
            print!("{}", jointeval_api::openapi_yaml());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
