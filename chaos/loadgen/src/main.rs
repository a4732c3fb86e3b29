//! `chaos-loadgen`: see the library docs and `--help`.

use std::process::ExitCode;

use chaos_loadgen::args::Args;
use chaos_loadgen::model::ChaosEvent;
use chaos_loadgen::{report, run};

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let out = match run::run(&args).await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("loadgen: could not run: {e:#}");
            return ExitCode::from(2);
        }
    };
    let events = match &args.events {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| ChaosEvent::parse_log(&t))
        {
            Ok(ev) => ev,
            Err(e) => {
                eprintln!("loadgen: ignoring event log {path}: {e}");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if let Some(path) = &args.attempts_csv
        && let Err(e) = std::fs::write(path, report::attempts_csv(&out.attempts))
    {
        eprintln!("loadgen: could not write {path}: {e}");
    }
    let summary = report::summarize(&args, &out, events);
    println!("{}", report::table(&summary));
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    match &args.json {
        Some(path) => {
            if let Err(e) = std::fs::write(path, json) {
                eprintln!("loadgen: could not write {path}: {e}");
                return ExitCode::from(2);
            }
        }
        None => println!("{json}"),
    }
    if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
