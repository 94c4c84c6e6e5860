//! The `virtual-kubelet` binary: flags → config → logging → the runtime connection.
//!
//! Owns process concerns only: parsing, logger setup, wiring the pieces together and mapping the
//! final error to an exit code (2 for bad flags, from clap or validation; 1 for a failure at run
//! time). No logic lives here.

use std::process::ExitCode;

use clap::Parser;
use vk_cri::config::{Config, Flags};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Runtime};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virtual-kubelet: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format_timestamp_millis().init();
}

fn run(config: &Config) -> Result<(), String> {
    let runtime = GrpcRuntime::new(
        &config.cri_socket,
        Deadlines {
            call: config.runtime_request_timeout,
            pull: config.image_pull_timeout,
        },
    );
    let version = runtime.version().map_err(|e| {
        format!(
            "{e} (is containerd running with its CRI plugin on {}? see --cri-socket)",
            config.cri_socket.display()
        )
    })?;
    log::info!(
        "runtime {} (CRI {}) on {}",
        version.node_runtime_version(),
        version.runtime_api_version,
        config.cri_socket.display()
    );
    let status = runtime.status().map_err(|e| e.to_string())?;
    for c in &status.conditions {
        log::info!("runtime condition {}={} {}", c.type_, c.status, c.message);
    }
    Err("pod management is not built into this version yet: it only checks the runtime".into())
}
