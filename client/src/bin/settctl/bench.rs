//! `settctl bench`: a load generator for etcd v3 API clusters.

use crate::Global;
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_global: &Global, _args: BenchArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
