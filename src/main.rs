//! The `tandem` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem::config::Config;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "SIP/WebRTC media gateway for contact centres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway.
    Run {
        /// Configuration file; when it does not exist the embedded default is used.
        #[arg(long, default_value = "config/tandem.toml")]
        config: PathBuf,
    },
    /// Validates a configuration file and exits.
    CheckConfig { path: PathBuf },
    /// Reads a password from stdin and prints its argon2 hash for an agent's `password_hash`.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword => {
            let mut password = String::new();
            if std::io::stdin().read_line(&mut password).is_err() {
                eprintln!("cannot read the password from stdin");
                return ExitCode::from(2);
            }
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                eprintln!("the password is empty");
                return ExitCode::from(2);
            }
            println!("{}", tandem::routing::password::hash(password));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { path } => match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let config = match Config::load_or_default(&config) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            tandem::telemetry::init(&config.log);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(tandem::server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
