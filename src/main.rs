use clap::Parser;

use pconv_bench::cli::{Cli, Command};
use pconv_bench::commands;
use pconv_bench::error::exit;

fn main() {
    // A panic is a bug, never an answer to input: say so in one line, exit as a run-time
    // failure, no backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error (please report it): {info}");
        std::process::exit(exit::RUNTIME);
    }));
    let argv: Vec<String> = std::env::args().collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line: clap's first line names the value and what is allowed.
            let rendered = e.to_string();
            eprintln!(
                "{}",
                rendered.lines().next().unwrap_or("error: bad arguments")
            );
            std::process::exit(exit::INVALID_INPUT);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
    };
    let result = match &cli.command {
        Command::Run(args) => commands::run::execute(args, argv),
        Command::Sweep(args) => commands::sweep::execute(args, argv),
        Command::Report(args) => commands::report::execute(args),
        Command::Calibrate(args) => commands::calibrate::execute(args),
        Command::Compare(args) => commands::compare::execute(args),
        Command::Merge(args) => commands::merge::execute(args, argv),
        Command::Model(args) => commands::model::execute(args, argv),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
