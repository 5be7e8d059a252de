//! Depth-3 reachability on one engine, two ways: the daemon's recursive CTE
//! (`GET .../neighbors?depth=3`) against an openCypher variable-length match
//! through `POST .../cypher` on Apache AGE. Both run on the same PGlite
//! server (PostgreSQL 18 + AGE 1.7 in WebAssembly), through the same daemon,
//! from the same start nodes, so their ratio compares the two query plans.

use crate::gen;
use crate::load::{closed_loop, project_path, Gen, Req, Stop};
use crate::{load_pokec, start, Ctx};
use anyhow::Result;
use bytes::Bytes;
use hyper::Method;
use rand::Rng;
use serde_json::json;
use std::sync::Arc;

pub struct Graph {
    pub users: u32,
    pub knows: usize,
    pub exponent: f64,
}

/// The query text of both sides, as reported in bench/RESULTS.md.
fn cypher_query(limit: usize) -> String {
    format!("MATCH (a:User {{id: $id}})-[:KNOWS*1..3]->(b:User) RETURN DISTINCT b.id AS reached LIMIT {limit}")
}
const REST: &str = "GET P/entities/{id}/neighbors?depth=3&direction=out&types=KNOWS&limit=L";

pub async fn ratio(ctx: &Ctx, pglite: &str, g: Graph, queries: u64, limit: usize) -> Result<()> {
    // PGlite serves one backend session: one pooled connection, no
    // statement timeout, no LISTEN (see ARCHITECTURE.md).
    let mut ctx_env = ctx.common.clone();
    for (k, v) in [
        ("STRATA_DATABASE_URL", pglite),
        ("STRATA_PG_POOL_SIZE", "1"),
        ("STRATA_PG_NOTIFY", "off"),
        ("STRATA_PG_STATEMENT_TIMEOUT_MS", "0"),
        ("STRATA_AGE", "on"),
    ] {
        ctx_env.env.push((k.into(), v.into()));
    }
    let ctx = Ctx {
        common: ctx_env,
        command_line: ctx.command_line.clone(),
        load_avg: ctx.load_avg.clone(),
    };
    let d = start(&ctx)?;
    let loaded = load_pokec(&ctx, &d, g.users, g.knows, g.exponent).await?;
    let n = g.users;
    let stop = Stop::Count {
        warmup: 10,
        measure: queries,
    };
    let seed = ctx.common.seed;
    // Both generators draw exactly one number per request from the same
    // seeded stream, so both sides start from the same nodes in the same order.
    let cte: Gen = Arc::new(move |_, _, r| {
        let id = gen::user_id(r.random_range(0..n));
        Req::get(project_path(&format!(
            "/entities/{id}/neighbors?depth=3&direction=out&types=KNOWS&limit={limit}"
        )))
    });
    let query = cypher_query(limit);
    let text = query.clone();
    let cypher: Gen = Arc::new(move |_, _, r| {
        let id = gen::user_id(r.random_range(0..n));
        let body = json!({"query": text, "params": {"id": id}});
        Req {
            method: Method::POST,
            path: project_path("/cypher"),
            body: Some(Bytes::from(body.to_string())),
        }
    });
    let cte = closed_loop(
        "depth3 recursive CTE",
        &d.addr,
        &d.key,
        seed,
        1,
        stop,
        "\"depth\"",
        cte,
    )
    .await?;
    let cypher = closed_loop(
        "depth3 AGE Cypher",
        &d.addr,
        &d.key,
        seed,
        1,
        stop,
        "[\"u",
        cypher,
    )
    .await?;
    let ratio = cypher.p50 / cte.p50.max(1e-9);
    println!(
        "AGE Cypher p50 / recursive CTE p50 = {ratio:.1} (graph: {} users, {} KNOWS)",
        loaded.users, loaded.knows
    );
    println!("CTE side:    {REST}");
    println!("Cypher side: POST P/cypher {query}");
    ctx.report(
        "age-ratio",
        &[cte, cypher],
        json!({
            "users": loaded.users, "knows": loaded.knows,
            "load_users_secs": loaded.users_took.as_secs_f64(),
            "load_knows_secs": loaded.knows_took.as_secs_f64(),
            "p50_ratio_cypher_over_cte": ratio,
            "cte": REST, "cypher": query,
        }),
    )
}
