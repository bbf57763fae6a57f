//! The `herald` binary: `herald` serves; `herald migrate` applies migrations and exits.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::config::Settings;
use herald::startup::{self, Application};

#[derive(Parser)]
#[command(version, about = "Real-time social network server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create the database if missing, apply pending migrations, and exit.
    Migrate,
}

#[actix_web::main]
async fn main() -> ExitCode {
    herald::logging::init();
    herald::auth::hasher::return_memory_after_hashing();
    startup::raise_open_files_limit();
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => startup::prepare_database(&settings.database)
            .await
            .map(|_| log::info!("database is up to date")),
        Command::Serve => match Application::build(settings).await {
            Ok(app) => app
                .run_until_stopped()
                .await
                .map_err(|e| startup::StartupError::Bind("the HTTP server".into(), e)),
            Err(error) => Err(error),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
