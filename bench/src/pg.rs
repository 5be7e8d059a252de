//! Server-mode runs: a fresh PostgreSQL database per run, so that every
//! workload starts as empty as it does on SQLite.

use anyhow::{Context, Result};
use tokio_postgres::{Client, NoTls};

pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connect to {url}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates `strata_bench_<time>` on the server behind `admin`.
pub async fn create_database(admin: &str) -> Result<Database> {
    let client = connect(admin).await?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let name = format!("strata_bench_{nanos}");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    // Every run starts right after a checkpoint, so that none pays for the
    // previous run's dirty pages and full-page writes more than another.
    client.batch_execute("CHECKPOINT").await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    let url = format!("{base}/{name}");
    eprintln!("server mode: fresh database {url}");
    Ok(Database {
        url,
        admin: admin.to_owned(),
        name,
    })
}

/// What a DBA runs after a bulk load: statistics for the planner and the
/// visibility map for index-only scans, instead of waiting for autovacuum.
pub async fn vacuum_analyze(url: &str) -> Result<std::time::Duration> {
    let client = connect(url).await?;
    let start = std::time::Instant::now();
    client.batch_execute("VACUUM (ANALYZE)").await?;
    Ok(start.elapsed())
}

impl Database {
    pub async fn drop_database(&self) -> Result<()> {
        let client = connect(&self.admin).await?;
        client
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await?;
        Ok(())
    }
}
