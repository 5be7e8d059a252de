//! `import-floor`: how fast the database alone stores the rows an import
//! writes, the bound under the import's own rate. N entities are imported
//! with `strata::import::run` (as `transfer` does), then the rows it wrote
//! (entities, versions, outbox; on SQLite the full-text rows as well) are
//! read back untimed and stored again into a fresh, migrated store by the
//! database's fastest means, timed:
//! - SQLite: batches of 20,000 entities, one transaction each, with the
//!   daemon's pragmas (WAL, `synchronous = FULL`), every row taken by
//!   `INSERT ... SELECT` from the imported file attached (no binding, no
//!   parsing, no JSON written out), the full-text rows from texts made
//!   beforehand, and the secondary index built after the load as the
//!   import's bulk path does.
//! - PostgreSQL: the three tables' rows as binary `COPY` data, taken out
//!   before and sent back with `COPY FROM STDIN BINARY`: one table after
//!   another on one connection, then the three side by side on three.

use crate::transfer::{generate, open_store, Opts};
use crate::Ctx;
use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Instant;
use strata::domain::{Caller, Scope};
use strata::store::sqlite::SqliteStore;

#[derive(clap::Args)]
pub struct FloorOpts {
    #[arg(long, default_value_t = 300_000)]
    pub entities: usize,
}

const BATCH: i64 = 20_000;

pub async fn import_floor(ctx: &Ctx, o: FloorOpts) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.ndjson");
    let graph = Opts {
        entities: o.entities,
        relationships: 0,
    };
    generate(&file, &graph, ctx.common.seed)?;
    let (config, store) = open_store(ctx, dir.path()).await?;
    let target = strata::import::Target::Project(Scope::new("bench", "p"));
    let t = Instant::now();
    strata::import::run(&store, &target, &file, &Caller::new("bench"), false).await?;
    let import = t.elapsed().as_secs_f64();
    store.close().await;
    let rate = |secs: f64| o.entities as f64 / secs;
    println!(
        "{}: import of {} entities {import:.1} s ({:.0} entities/s)",
        store.backend(),
        o.entities,
        rate(import)
    );

    let floors = match config.database_url.strip_prefix("sqlite://") {
        Some(path) => sqlite_floor(path, &dir.path().join("floor.db"))?,
        None => postgres_floor(ctx, &config.database_url).await?,
    };
    let mut report = json!({
        "backend": store.backend(), "entities": o.entities,
        "import_secs": import, "import_entities_per_sec": rate(import),
    });
    for (name, secs) in floors {
        println!(
            "{}: floor, {name}: {secs:.1} s ({:.0} entities/s)",
            store.backend(),
            rate(secs)
        );
        report[format!("floor_{}_secs", name.replace([' ', ','], "_"))] = json!(secs);
    }
    ctx.report("import-floor", &[], report)
}

fn sqlite_floor(imported: &str, fresh: &std::path::Path) -> Result<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    for with_text in [false, true] {
        let _ = std::fs::remove_file(fresh);
        let path = fresh.to_str().context("a UTF-8 path")?;
        SqliteStore::migrate(path)?;
        let conn = SqliteStore::writer_connection(fresh)?;
        conn.execute("ATTACH ?1 AS src", [imported])?;
        let texts = if with_text { texts(&conn)? } else { Vec::new() };
        let (low, high): (i64, i64) =
            conn.query_row("SELECT min(seq), max(seq) FROM src.entities", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let t = Instant::now();
        conn.execute_batch("DROP INDEX entities_by_type")?;
        let mut next_text = texts.iter().peekable();
        for from in (low..=high).step_by(BATCH as usize) {
            let to = from + BATCH - 1;
            conn.execute_batch("BEGIN")?;
            for table in ["entities", "entity_versions", "outbox"] {
                conn.prepare_cached(&format!(
                    "INSERT INTO main.{table} SELECT * FROM src.{table} WHERE seq BETWEEN ?1 AND ?2"
                ))?
                .execute([from, to])?;
            }
            let mut fts = conn.prepare_cached(
                "INSERT INTO entity_fts (rowid, scope, body) VALUES (?1, ?2, ?3)",
            )?;
            while let Some((rowid, scope, body)) = next_text
                .next_if(|(_, _, _, seq)| *seq <= to)
                .map(|(r, s, b, _)| (r, s, b))
            {
                fts.execute(rusqlite::params![rowid, scope, body])?;
            }
            conn.execute_batch("COMMIT")?;
        }
        conn.execute_batch(
            "CREATE INDEX entities_by_type ON entities (org_id, project_id, type, id)",
        )?;
        let name = if with_text {
            "rows and full text"
        } else {
            "rows"
        };
        out.push((name, t.elapsed().as_secs_f64()));
    }
    Ok(out)
}

/// What the full-text index holds for each imported entity (rowid, scope
/// token, text, change sequence), in change sequence order.
fn texts(conn: &rusqlite::Connection) -> Result<Vec<(i64, String, String, i64)>> {
    let mut st = conn.prepare(
        "SELECT e.rowid, p.pk, e.properties, e.seq FROM src.entities AS e
         JOIN src.projects AS p ON p.org_id = e.org_id AND p.id = e.project_id
         WHERE e.deleted_at IS NULL ORDER BY e.seq",
    )?;
    let rows = st.query_map([], |r| {
        let props: String = r.get(2)?;
        Ok((r.get(0)?, r.get::<_, i64>(1)?, props, r.get(3)?))
    })?;
    rows.map(|row| {
        let (rowid, pk, props, seq) = row?;
        let props: strata::domain::Properties = serde_json::from_str(&props)?;
        Ok((
            rowid,
            format!("p{pk}"),
            strata::search::text_of(&props),
            seq,
        ))
    })
    .collect()
}

const TABLES: [&str; 3] = ["entities", "entity_versions", "outbox"];

/// Columns to copy: all but the generated ones (`entities.search`).
async fn columns(client: &tokio_postgres::Client, table: &str) -> Result<String> {
    let row = client
        .query_one(
            "SELECT string_agg(quote_ident(column_name), ', ' ORDER BY ordinal_position)
             FROM information_schema.columns
             WHERE table_schema = 'strata' AND table_name = $1 AND is_generated = 'NEVER'",
            &[&table],
        )
        .await?;
    Ok(row.get(0))
}

async fn postgres_floor(ctx: &Ctx, imported: &str) -> Result<Vec<(&'static str, f64)>> {
    let admin = ctx.common.postgres.as_deref().context("--postgres")?;
    let source = crate::pg::connect(imported).await?;
    let mut data = Vec::new();
    for table in TABLES {
        let cols = columns(&source, table).await?;
        let copy = format!("COPY strata.{table} ({cols}) TO STDOUT (FORMAT binary)");
        let stream = source.copy_out(copy.as_str()).await?;
        let chunks: Vec<bytes::Bytes> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        data.push((table, cols, chunks));
    }
    let mut out = Vec::new();
    for (name, side_by_side) in [("one connection", false), ("three connections", true)] {
        let db = crate::pg::create_database(admin).await?;
        let mut config = strata::config::Config::embedded(std::env::temp_dir());
        config.database_url = db.url.clone();
        strata::store::open(&config.database_url, &config.store_settings())
            .await?
            .close()
            .await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(crate::pg::connect(&db.url).await?);
        }
        let t = Instant::now();
        let loads = data
            .iter()
            .zip(&clients)
            .map(|((table, cols, chunks), client)| copy_in(client, table, cols, chunks));
        if side_by_side {
            futures_util::future::try_join_all(loads).await?;
        } else {
            for load in loads {
                load.await?;
            }
        }
        out.push((name, t.elapsed().as_secs_f64()));
        drop(clients);
        if !ctx.common.keep {
            db.drop_database().await?;
        }
    }
    Ok(out)
}

async fn copy_in(
    client: &tokio_postgres::Client,
    table: &str,
    cols: &str,
    chunks: &[bytes::Bytes],
) -> Result<()> {
    let copy = format!("COPY strata.{table} ({cols}) FROM STDIN (FORMAT binary)");
    let sink = client.copy_in::<_, bytes::Bytes>(copy.as_str()).await?;
    futures_util::pin_mut!(sink);
    for chunk in chunks {
        sink.send(chunk.clone()).await?;
    }
    sink.finish().await?;
    Ok(())
}
