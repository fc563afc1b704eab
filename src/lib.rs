//! pconv-bench: does Partial Convolution (FasterNet's PConv) really beat DWConv and GConv?
//!
//! Data flows one way: `config` (suite files) -> `plan` (points) -> `ops` (operators and
//! their cost models) -> `verify` (against a naive reference) -> `measure` (timing and
//! statistics) -> `record` (the JSON schema) -> `report` (table, JSON).

pub mod answer;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod device;
pub mod error;
pub mod heap;
pub mod measure;
pub mod memory;
pub mod merge;
pub mod metadata;
pub mod ops;
pub mod output;
pub mod plan;
pub mod progress;
pub mod record;
pub mod report;
pub mod roofline;
pub mod verify;
