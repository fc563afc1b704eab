//! `pconv-bench merge`: interleaved rounds measured as separate processes, pooled into one
//! results file.

use crate::cli::MergeArgs;
use crate::error::Result;
use crate::output::Output;
use crate::report::json;

pub fn execute(args: &MergeArgs, argv: Vec<String>) -> Result<i32> {
    let out = Output::resolve(&args.json, "--json")?;
    let files = args
        .files
        .iter()
        .map(|p| json::read(p).map(|r| (p.clone(), r)))
        .collect::<Result<Vec<_>>>()?;
    let mut merged = crate::merge::merge(files)?;
    merged.command = argv;
    merged.created_at = crate::metadata::now_rfc3339();
    json::write(&out, &merged)?;
    eprintln!(
        "wrote {} records pooled from {} files to {}",
        merged.records.len(),
        args.files.len(),
        args.json.display()
    );
    Ok(0)
}
