//! The Apache AGE projection and read-only Cypher.
//!
//! One graph per project (`strata_g<projects.pk>`), updated in the write's
//! transaction. Cypher text is built only from our own templates
//! (`age/projection.cypher`), validated type names and property keys quoted by
//! `cypher_key`; every user value travels in the single agtype parameter.

use super::rows::{self, pg_err, query};
use crate::domain::cypher;
use crate::domain::*;
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};

const TEMPLATES: &str = include_str!("../../../age/projection.cypher");
pub const SETUP: &str = include_str!("../../../age/setup.sql");
pub const SESSION: &str = include_str!("../../../age/session.sql");

/// Rows per page when `age sync` redraws a graph.
const REBUILD_PAGE: usize = 1000;

/// The project's live entities (`le`) and live relationships (`lr`), as
/// CTEs for the graph comparison ($1 org, $2 project).
const LIVE_ROWS: &str = "
    le AS (SELECT id FROM entities
           WHERE org_id = $1 AND project_id = $2 AND deleted_at IS NULL),
    lr AS (SELECT id, from_id, to_id FROM relationships
           WHERE org_id = $1 AND project_id = $2 AND live)";

/// The statement after the `// name` line of `age/projection.cypher`.
fn template(name: &str) -> &'static str {
    let marker = format!("// {name}");
    let mut lines = TEMPLATES.lines();
    lines
        .find(|l| l.trim() == marker)
        .and_then(|_| lines.next())
        .unwrap_or_else(|| panic!("age/projection.cypher has no {name}"))
}

/// An agtype value in binary form: version byte 1, then the text form.
#[derive(Debug, Clone)]
pub struct Agtype(pub String);

impl ToSql for Agtype {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "agtype"
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Agtype {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = match raw.split_first() {
            Some((1, rest)) => rest,
            _ => raw,
        };
        Ok(Agtype(std::str::from_utf8(text)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "agtype"
    }
}

/// The one audited way a property key enters Cypher text: back-quoted,
/// with back-quotes doubled.
pub fn cypher_key(key: &str) -> String {
    format!("`{}`", key.replace('`', "``"))
}

pub fn graph_name(project_pk: i64) -> String {
    format!("strata_g{project_pk}")
}

/// AGE is present: its type, and the labels known to exist with indexes.
#[derive(Clone)]
pub struct Age {
    agtype: Type,
    /// Labels whose creating transaction has committed (`graph/label`).
    indexed: Arc<Mutex<HashSet<String>>>,
}

/// Labels a transaction made sure of; remembered only once it commits, so
/// a concurrent first use never skips the check while the label is still
/// invisible to it.
#[derive(Default)]
pub struct NewLabels(Vec<String>);

#[derive(Clone, Copy)]
enum LabelKind {
    Vertex,
    Edge,
}

/// Creates a label with its indexes unless it exists: AGE would create it
/// on first use without any, and every `MATCH (n:L {id: $id})` of the
/// projection would scan the label (18 ms per lookup at 20k vertices on
/// PGlite, 1.2 ms with the GIN index, which AGE uses for `{id: ...}`).
/// Graph and label are validated identifiers; the advisory lock makes
/// concurrent first uses of one label wait for each other.
fn ensure_label_sql(graph: &str, label: &str, kind: LabelKind) -> String {
    let (create, edge_indexes) = match kind {
        LabelKind::Vertex => ("create_vlabel", String::new()),
        LabelKind::Edge => (
            "create_elabel",
            format!(
                "CREATE INDEX ON {graph}.\"{label}\" (start_id);
                 CREATE INDEX ON {graph}.\"{label}\" (end_id);"
            ),
        ),
    };
    format!(
        "DO $strata$ BEGIN
           PERFORM pg_advisory_xact_lock(hashtextextended('strata_age_label/{graph}/{label}', 0));
           IF NOT EXISTS (SELECT 1 FROM ag_catalog.ag_label l
                          JOIN ag_catalog.ag_graph g ON g.graphid = l.graph
                          WHERE g.name = '{graph}' AND l.name = '{label}') THEN
             PERFORM ag_catalog.{create}('{graph}', '{label}');
             CREATE INDEX ON {graph}.\"{label}\" USING gin (properties);
             {edge_indexes}
           END IF;
         END $strata$"
    )
}

/// A map literal `{id: $id, `k`: $p0, ...}` and the parameters it needs.
fn map_literal(id: &str, props: &Properties, params: &mut Map<String, Value>) -> String {
    params.insert("id".into(), Value::String(id.to_owned()));
    let mut fields = vec!["id: $id".to_string()];
    for (i, (k, v)) in props.iter().filter(|(k, _)| k.as_str() != "id").enumerate() {
        let name = format!("p{i}");
        fields.push(format!("{}: ${name}", cypher_key(k)));
        params.insert(name, v.clone());
    }
    format!("{{{}}}", fields.join(", "))
}

impl Age {
    /// Installs AGE when the server has it; `None` when it does not.
    pub async fn detect(c: &tokio_postgres::Client) -> DomainResult<Option<Age>> {
        let available = c
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'age'",
                &[],
            )
            .await
            .map_err(pg_err)?
            .is_some();
        if !available {
            return Ok(None);
        }
        c.batch_execute(SETUP).await.map_err(pg_err)?;
        c.batch_execute(SESSION).await.map_err(pg_err)?;
        let oid: u32 = c
            .query_one("SELECT 'ag_catalog.agtype'::regtype::oid", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        Ok(Some(Age {
            agtype: Type::new("agtype".into(), oid, Kind::Simple, "ag_catalog".into()),
            indexed: Arc::default(),
        }))
    }

    /// AGE answers on a pooled connection: its library reads an agtype
    /// and its catalog of graphs can be read.
    pub async fn ping(&self, c: &tokio_postgres::Client) -> DomainResult<()> {
        c.simple_query("SELECT '1'::ag_catalog.agtype, count(*) FROM ag_catalog.ag_graph")
            .await
            .map_err(pg_err)?;
        Ok(())
    }

    /// Runs one Cypher statement on `graph` with `params`; returns the rows as
    /// agtype text, `columns` values each.
    async fn run<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        cypher_text: &str,
        params: Map<String, Value>,
        columns: usize,
        limit: Option<i64>,
    ) -> DomainResult<Vec<Vec<String>>> {
        // A random dollar tag: user text cannot close the literal it sits in.
        let tag = format!("strata_{:016x}", rand::random::<u64>());
        let cols = (0..columns)
            .map(|i| format!("c{i} ag_catalog.agtype"))
            .collect::<Vec<_>>()
            .join(", ");
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let sql = format!(
            "SELECT * FROM ag_catalog.cypher('{graph}', ${tag}$ {cypher_text} ${tag}$, $1) AS ({cols}){limit}"
        );
        let arg = Agtype(Value::Object(params).to_string());
        let statement = c
            .prepare_typed(&sql, std::slice::from_ref(&self.agtype))
            .await
            .map_err(cypher_error)?;
        let found = c.query(&statement, &[&arg]).await.map_err(cypher_error)?;
        Ok(found
            .iter()
            .map(|r| {
                (0..columns)
                    .map(|i| {
                        r.get::<_, Option<Agtype>>(i)
                            .map(|a| a.0)
                            .unwrap_or_else(|| "null".into())
                    })
                    .collect()
            })
            .collect())
    }

    pub async fn create_graph<C: GenericClient>(&self, c: &C, pk: i64) -> DomainResult<()> {
        rows::execute(
            c,
            "SELECT ag_catalog.create_graph($1::text::name)",
            &[&graph_name(pk)],
        )
        .await?;
        Ok(())
    }

    pub async fn drop_graph<C: GenericClient>(&self, c: &C, pk: i64) -> DomainResult<()> {
        let name = graph_name(pk);
        let prefix = format!("{name}/");
        self.labels().retain(|k| !k.starts_with(&prefix));
        let exists = rows::query_opt(
            c,
            "SELECT 1 FROM ag_catalog.ag_graph WHERE name = $1::text::name",
            &[&name],
        )
        .await?
        .is_some();
        if exists {
            rows::execute(
                c,
                "SELECT ag_catalog.drop_graph($1::text::name, true)",
                &[&name],
            )
            .await?;
        }
        Ok(())
    }

    fn labels(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.indexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure `label` exists with its indexes; `new` collects it for
    /// `remember` after the commit.
    async fn ensure_label<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        label: &str,
        kind: LabelKind,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        let key = format!("{graph}/{label}");
        if self.labels().contains(&key) || new.0.contains(&key) {
            return Ok(());
        }
        c.batch_execute(&ensure_label_sql(graph, label, kind))
            .await
            .map_err(pg_err)?;
        new.0.push(key);
        Ok(())
    }

    /// The labels of a committed transaction: known to exist from now on.
    pub fn remember(&self, new: NewLabels) {
        self.labels().extend(new.0);
    }

    async fn exec<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        text: &str,
        params: Map<String, Value>,
    ) -> DomainResult<usize> {
        Ok(self.run(c, graph, text, params, 1, None).await?.len())
    }

    async fn remove_vertex<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        id: &str,
    ) -> DomainResult<()> {
        let params = || Map::from_iter([("id".to_string(), Value::String(id.to_owned()))]);
        // Edges first: AGE 1.7 on PGlite leaves a DETACH DELETE's edges
        // behind, dangling. The DETACH is for builds that check at commit.
        self.exec(c, graph, template("delete_vertex_edges"), params())
            .await?;
        self.exec(c, graph, template("detach_delete_vertex"), params())
            .await?;
        Ok(())
    }

    async fn add_vertex<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        e: &Entity,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        self.ensure_label(c, graph, &e.entity_type, LabelKind::Vertex, new)
            .await?;
        let mut params = Map::new();
        let text = template("create_vertex")
            .replace("{label}", &e.entity_type)
            .replace("{map}", &map_literal(&e.id, &e.properties, &mut params));
        self.exec(c, graph, &text, params).await?;
        Ok(())
    }

    async fn add_edge<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        scope: &Scope,
        r: &Relationship,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        let ends = query(
            c,
            "SELECT id, type FROM entities WHERE org_id = $1 AND project_id = $2 AND id = ANY($3)",
            &[
                &scope.org,
                &scope.project,
                &vec![r.from.clone(), r.to.clone()],
            ],
        )
        .await?;
        let label_of = |id: &str| {
            ends.iter()
                .find(|row| row.get::<_, &str>(0) == id)
                .map(|row| row.get::<_, String>(1))
                .ok_or_else(|| DomainError::internal(format!("relationship end {id} has no row")))
        };
        self.ensure_label(c, graph, &r.rel_type, LabelKind::Edge, new)
            .await?;
        let mut params = Map::new();
        let text = template("create_edge")
            .replace("{from_label}", &label_of(&r.from)?)
            .replace("{to_label}", &label_of(&r.to)?)
            .replace("{label}", &r.rel_type)
            .replace("{map}", &map_literal(&r.id, &r.properties, &mut params));
        params.insert("from".into(), Value::String(r.from.clone()));
        params.insert("to".into(), Value::String(r.to.clone()));
        self.exec(c, graph, &text, params).await?;
        Ok(())
    }

    async fn remove_edge<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        id: &str,
    ) -> DomainResult<()> {
        let params = Map::from_iter([("id".to_string(), Value::String(id.to_owned()))]);
        self.exec(c, graph, template("delete_edge"), params).await?;
        Ok(())
    }

    /// Rebuilds one entity's vertex and its live edges from the tables. The
    /// caller holds the entity row and the rows of its relationships.
    async fn resync_entity<C: GenericClient>(
        &self,
        c: &C,
        graph: &str,
        scope: &Scope,
        id: &str,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        self.remove_vertex(c, graph, id).await?;
        let Some(e) = super::entities::load(c, scope, id, false).await? else {
            return Ok(());
        };
        if e.deleted_at.is_some() {
            return Ok(());
        }
        self.add_vertex(c, graph, &e, new).await?;
        let sql = format!(
            "SELECT {} FROM relationships
             WHERE org_id = $1 AND project_id = $2 AND live AND (from_id = $3 OR to_id = $3)",
            rows::REL_COLS
        );
        for row in query(c, &sql, &[&scope.org, &scope.project, &id]).await? {
            self.add_edge(c, graph, scope, &rows::relationship(&row), new)
                .await?;
        }
        Ok(())
    }

    /// Mirrors one applied write into the project's graph. The write has
    /// locked the rows it changed (locks.rs), so no other transaction is
    /// changing these vertices and edges.
    pub async fn project<C: GenericClient>(
        &self,
        c: &C,
        pk: i64,
        scope: &Scope,
        action: WriteAction,
        outcome: &WriteOutcome,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        let graph = graph_name(pk);
        match outcome {
            WriteOutcome::Entity {
                entity,
                created: true,
            } => self.add_vertex(c, &graph, entity, new).await,
            WriteOutcome::Entity { entity, .. } if action == WriteAction::EntityDelete => {
                self.remove_vertex(c, &graph, &entity.id).await
            }
            WriteOutcome::Entity { entity, .. } if action == WriteAction::EntityRestore => {
                self.resync_entity(c, &graph, scope, &entity.id, new).await
            }
            WriteOutcome::Entity { entity, .. } => {
                let mut params = Map::new();
                let text = template("update_vertex")
                    .replace("{label}", &entity.entity_type)
                    .replace(
                        "{map}",
                        &map_literal(&entity.id, &entity.properties, &mut params),
                    );
                // No row: the type (label) changed, so the vertex is rebuilt,
                // and with it the edges, whose rows are locked first.
                if self.exec(c, &graph, &text, params).await? == 0 {
                    super::locks::relationships_touching(c, scope, &entity.id).await?;
                    self.resync_entity(c, &graph, scope, &entity.id, new)
                        .await?;
                }
                Ok(())
            }
            WriteOutcome::Purged { id, .. } => self.remove_vertex(c, &graph, id).await,
            WriteOutcome::Relationship(r) => {
                if action != WriteAction::RelationshipCreate {
                    self.remove_edge(c, &graph, &r.id).await?;
                }
                self.add_edge(c, &graph, scope, r, new).await
            }
            WriteOutcome::Deleted { id } => self.remove_edge(c, &graph, id).await,
        }
    }

    /// Repairs relationship liveness in the tables, measures how the graph
    /// differs from them, rebuilds it and measures again. The caller holds
    /// the project row exclusively: no write runs meanwhile.
    pub async fn sync<C: GenericClient>(
        &self,
        c: &C,
        pk: i64,
        scope: &Scope,
        new: &mut NewLabels,
    ) -> DomainResult<GraphSync> {
        let (relationships_hidden, relationships_revived) =
            super::relationships::repair_liveness(c, scope).await?;
        let before = self.drift(c, pk, scope).await?;
        self.rebuild(c, pk, scope, new).await?;
        let after = self.drift(c, pk, scope).await?;
        let graph = &graph_name(pk);
        let count = |name| async move {
            let rows = self
                .run(c, graph, template(name), Map::new(), 1, None)
                .await?;
            Ok::<u64, DomainError>(rows.first().and_then(|r| r[0].parse().ok()).unwrap_or(0))
        };
        Ok(GraphSync {
            relationships_hidden,
            relationships_revived,
            before,
            after,
            vertices: count("count_vertices").await?,
            edges: count("count_edges").await?,
        })
    }

    /// Drops the project's graph and draws it again from the tables, a
    /// page of rows at a time.
    async fn rebuild<C: GenericClient>(
        &self,
        c: &C,
        pk: i64,
        scope: &Scope,
        new: &mut NewLabels,
    ) -> DomainResult<()> {
        self.drop_graph(c, pk).await?;
        self.create_graph(c, pk).await?;
        let graph = graph_name(pk);
        let entities = format!(
            "SELECT {} FROM entities WHERE org_id = $1 AND project_id = $2 AND deleted_at IS NULL
               AND id > $3 ORDER BY id LIMIT {REBUILD_PAGE}",
            rows::ENTITY_COLS
        );
        let mut after = String::new();
        loop {
            let page = query(c, &entities, &[&scope.org, &scope.project, &after]).await?;
            for row in &page {
                self.add_vertex(c, &graph, &rows::entity(row), new).await?;
            }
            match page.last() {
                Some(last) => after = last.get(0),
                None => break,
            }
        }
        let rels = format!(
            "SELECT {} FROM relationships WHERE org_id = $1 AND project_id = $2 AND live
               AND id > $3 ORDER BY id LIMIT {REBUILD_PAGE}",
            rows::REL_COLS
        );
        let mut after = String::new();
        loop {
            let page = query(c, &rels, &[&scope.org, &scope.project, &after]).await?;
            for row in &page {
                self.add_edge(c, &graph, scope, &rows::relationship(row), new)
                    .await?;
            }
            match page.last() {
                Some(last) => after = last.get(0),
                None => break,
            }
        }
        Ok(())
    }

    /// The graph against the tables: live entities and vertices, live
    /// relationships and edges (with their ends), and edges left dangling.
    /// Compared by the server (an agtype string cast to text is the string
    /// itself), so nothing of the project is held here.
    async fn drift<C: GenericClient>(
        &self,
        c: &C,
        pk: i64,
        scope: &Scope,
    ) -> DomainResult<GraphDrift> {
        let graph = graph_name(pk);
        let exists = rows::query_opt(
            c,
            "SELECT 1 FROM ag_catalog.ag_graph WHERE name = $1::text::name",
            &[&graph],
        )
        .await?
        .is_some();
        let sql = if exists {
            format!(
                "WITH v AS (SELECT n::text AS id FROM ag_catalog.cypher('{graph}', $$ {} $$)
                            AS (n ag_catalog.agtype)),
                      e AS (SELECT i::text AS id, f::text AS from_id, t::text AS to_id
                            FROM ag_catalog.cypher('{graph}', $$ {} $$)
                            AS (i ag_catalog.agtype, f ag_catalog.agtype, t ag_catalog.agtype)),
                      {LIVE_ROWS}
                 SELECT (SELECT count(*) FROM le WHERE NOT EXISTS (SELECT 1 FROM v WHERE v.id = le.id)),
                        (SELECT count(*) FROM v)
                          - (SELECT count(DISTINCT id) FROM v
                             WHERE EXISTS (SELECT 1 FROM le WHERE le.id = v.id)),
                        (SELECT count(*) FROM lr WHERE NOT EXISTS
                            (SELECT 1 FROM e WHERE e.id = lr.id AND e.from_id = lr.from_id
                                               AND e.to_id = lr.to_id)),
                        (SELECT count(*) FROM e)
                          - (SELECT count(DISTINCT id) FROM e WHERE EXISTS
                             (SELECT 1 FROM lr WHERE lr.id = e.id AND lr.from_id = e.from_id
                                                 AND lr.to_id = e.to_id)),
                        (SELECT count(*) FROM {graph}._ag_label_edge x
                         WHERE NOT EXISTS (SELECT 1 FROM {graph}._ag_label_vertex y
                                           WHERE y.id OPERATOR(ag_catalog.=) x.start_id)
                            OR NOT EXISTS (SELECT 1 FROM {graph}._ag_label_vertex y
                                           WHERE y.id OPERATOR(ag_catalog.=) x.end_id))",
                template("vertex_ids"),
                template("edge_ends"),
            )
        } else {
            format!(
                "WITH {LIVE_ROWS}
                 SELECT (SELECT count(*) FROM le), 0::bigint, (SELECT count(*) FROM lr),
                        0::bigint, 0::bigint"
            )
        };
        let row = rows::query_opt(c, &sql, &[&scope.org, &scope.project])
            .await?
            .ok_or_else(|| DomainError::internal("the graph comparison answered no row"))?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok(GraphDrift {
            missing_vertices: n(0),
            stray_vertices: n(1),
            missing_edges: n(2),
            stray_edges: n(3),
            dangling_edges: n(4),
        })
    }

    /// A user's read-only query on the project's graph, at most `max_rows`.
    pub async fn query<C: GenericClient>(
        &self,
        c: &C,
        pk: i64,
        text: &str,
        params: &Map<String, Value>,
        max_rows: usize,
    ) -> DomainResult<CypherResult> {
        let columns = cypher::check_read_only(text)?;
        let found = self
            .run(
                c,
                &graph_name(pk),
                text,
                params.clone(),
                columns.len(),
                Some(max_rows as i64 + 1),
            )
            .await?;
        if found.len() > max_rows {
            return Err(DomainError::BadRequest(format!(
                "the query returns more than {max_rows} rows; add LIMIT"
            )));
        }
        let rows = found
            .iter()
            .map(|r| {
                r.iter()
                    .map(|v| agtype_to_json(v))
                    .collect::<DomainResult<Vec<_>>>()
            })
            .collect::<DomainResult<Vec<_>>>()?;
        Ok(CypherResult { columns, rows })
    }
}

/// Errors from user Cypher are the user's (400); the rest are faults.
fn cypher_error(e: tokio_postgres::Error) -> DomainError {
    match e.as_db_error() {
        Some(db)
            if db.code().code().starts_with("42")
                || db.code().code().starts_with("22")
                || db.code().code() == "25006" =>
        {
            DomainError::BadRequest(format!("cypher: {}", db.message()))
        }
        _ => pg_err(e),
    }
}

/// agtype text to plain JSON: `::vertex`/`::edge`/`::path`/`::numeric`
/// annotations dropped; vertices and edges as `{id, label, properties}` with
/// the entity or relationship id.
pub fn agtype_to_json(text: &str) -> DomainResult<Value> {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            plain.push(c);
            match c {
                '\\' => plain.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            plain.push(c);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                chars.next();
            }
        } else {
            plain.push(c);
        }
    }
    let value: Value = serde_json::from_str(&plain)
        .map_err(|e| DomainError::internal(format!("unreadable agtype {text:?}: {e}")))?;
    Ok(elements_to_entities(value))
}

fn elements_to_entities(v: Value) -> Value {
    match v {
        Value::Object(mut m)
            if m.contains_key("label")
                && m.get("properties").is_some_and(Value::is_object)
                && m.get("id").is_some_and(Value::is_number) =>
        {
            let mut props = m
                .remove("properties")
                .and_then(|p| p.as_object().cloned())
                .unwrap_or_default();
            let id = props.remove("id").unwrap_or(Value::Null);
            serde_json::json!({ "id": id, "label": m.remove("label"), "properties": props })
        }
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, elements_to_entities(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(elements_to_entities).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_quoted_so_they_cannot_end_the_name() {
        assert_eq!(cypher_key("a`b"), "`a``b`");
        assert_eq!(cypher_key("x}) DETACH DELETE (n"), "`x}) DETACH DELETE (n`");
    }

    #[test]
    fn map_literals_carry_values_only_as_parameters() {
        let props = json!({"id": "ignored", "t`x": "'; DROP TABLE entities; --"});
        let mut params = Map::new();
        let text = map_literal("e1", props.as_object().unwrap(), &mut params);
        assert_eq!(text, "{id: $id, `t``x`: $p0}");
        assert_eq!(params["id"], "e1");
        assert_eq!(params["p0"], "'; DROP TABLE entities; --");
    }

    #[test]
    fn agtype_text_becomes_plain_json() {
        let v = agtype_to_json(r#"{"id": 844424930131969, "label": "task", "properties": {"id": "a", "n": "x::y"}}::vertex"#).unwrap();
        assert_eq!(
            v,
            json!({"id": "a", "label": "task", "properties": {"n": "x::y"}})
        );
        assert_eq!(agtype_to_json("1.5::numeric").unwrap(), json!(1.5));
        assert_eq!(
            agtype_to_json("[1, \"a\", null]").unwrap(),
            json!([1, "a", null])
        );
    }

    #[test]
    fn every_template_exists() {
        for name in [
            "create_vertex",
            "update_vertex",
            "delete_vertex_edges",
            "detach_delete_vertex",
            "vertex_ids",
            "edge_ends",
            "create_edge",
            "delete_edge",
            "count_vertices",
            "count_edges",
        ] {
            assert!(!template(name).is_empty());
        }
    }
}
