//! The deployment files agree with the code. Docker cannot run here, so the
//! files are read and held against the daemon instead:
//! - every `STRATA_*` variable the compose files, the Dockerfile, the proxy
//!   configuration and the systemd unit name is one the daemon knows
//!   (`config::known_variables`), and the environment each gives the daemon
//!   is a configuration it accepts;
//! - every service the server stack's daemon is configured to use
//!   (PostgreSQL, the S3 endpoint, Meilisearch, Ollama) is a service of the
//!   file that starts before it; the buckets it writes to are made and the
//!   embedding model it asks Ollama for is pulled;
//! - every image is pinned to a release;
//! - each health check that runs `strata` is run here, with the built
//!   binary and the service's environment, against a real daemon: it
//!   passes while the daemon is ready and fails, saying why, when
//!   Meilisearch is down or the daemon is gone;
//! - the Dockerfile declares its data directory a volume, and the SQLite
//!   stack keeps the database in a named volume;
//! - scaling: the daemons publish no host port, and the proxy in front
//!   finds them by their service name on the port they listen on;
//! - the alert rules and the dashboard name only metrics (and labels) a
//!   daemon renders on `/metrics`, and runbooks that exist.
//!
//! The last test shows each check failing on a broken input.

use crate::support;
use crate::support::meili_standin::MeiliStandin;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const ADMIN: &str = "test-admin-key-0123456789";
/// What a required `${VAR}` of a compose file stands for here: long enough
/// for every secret the daemon checks (the admin key wants 16 characters).
const PLACEHOLDER: &str = "0123456789abcdef0123456789abcdef";
/// The server stack and the service that runs the daemon in every stack.
const SERVER: &str = "docker-compose.yml";
const SQLITE: &str = "sqlite.yml";
const DAEMON: &str = "strata";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every compose file in compose/, by file name.
fn compose_files() -> BTreeMap<String, Value> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("compose")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            let doc: Value = serde_yaml::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("compose/{name} is not YAML: {e}"));
            files.insert(name, doc);
        }
    }
    for expected in [SERVER, SQLITE] {
        assert!(files.contains_key(expected), "compose/{expected} is gone");
    }
    files
}

fn services(doc: &Value) -> &Mapping {
    doc["services"].as_mapping().expect("a services mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// A YAML scalar as the text a container sees.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Compose's interpolation, as `docker compose` does it with the variables
/// of the file's header exported: `${X:-default}` is the default, any other
/// `${X...}` a placeholder secret, `$$` a dollar.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').expect("a closed ${...}");
            let body = &inner[..end];
            match body.split_once(":-") {
                Some((_, default)) => out.push_str(default),
                None => out.push_str(PLACEHOLDER),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `environment:` as a map (the mapping form or the `K=V` list form).
fn environment(svc: &Value) -> HashMap<String, String> {
    match &svc["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (scalar(k), interpolate(&scalar(v))))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| {
                let line = scalar(i);
                let (k, v) = line.split_once('=').unwrap_or((line.as_str(), ""));
                (k.to_string(), interpolate(v))
            })
            .collect(),
        Value::Null => HashMap::new(),
        other => panic!("environment is neither a mapping nor a list: {other:?}"),
    }
}

/// The Dockerfile a service builds, if it builds one.
fn built_dockerfile(svc: &Value) -> Option<PathBuf> {
    let build = &svc["build"];
    if build.is_null() {
        return None;
    }
    let (context, file) = match build {
        Value::String(context) => (context.clone(), "Dockerfile".to_string()),
        _ => (
            scalar(&build["context"]),
            build.get("dockerfile").map_or("Dockerfile".into(), scalar),
        ),
    };
    Some(root().join("compose").join(context).join(file))
}

/// `ENV` of a Dockerfile (the `K=V K=V` form).
fn dockerfile_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV in the K=V form");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The environment a service's daemon runs with: its image's `ENV` under
/// its own `environment:`.
fn daemon_environment(svc: &Value) -> HashMap<String, String> {
    let mut env = built_dockerfile(svc)
        .map(|f| dockerfile_env(&read(&f)))
        .unwrap_or_default();
    env.extend(environment(svc));
    env
}

fn config_of(file: &str, env: &HashMap<String, String>) -> strata::config::Config {
    strata::config::Config::from_vars(env.clone())
        .unwrap_or_else(|e| panic!("{file}: the daemon refuses its environment: {e:#}"))
}

/// Every `STRATA_...` name in a text.
fn strata_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("STRATA_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        // `STRATA_*` in prose is a pattern, not a name.
        if !tail[end..].starts_with('*') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The names of `names` the daemon does not know.
fn unknown_settings(names: &BTreeSet<String>) -> Vec<String> {
    let known: BTreeSet<&str> = strata::config::known_variables().collect();
    names
        .iter()
        .filter(|n| !known.contains(n.as_str()))
        .cloned()
        .collect()
}

/// Whether an image reference names a release: a digest, or a tag that is
/// not a moving one and has a version number in it.
fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    // A registry's port is before the last `/`; the tag after it.
    let last = image.rsplit('/').next().unwrap_or(image);
    let Some((_, tag)) = last.split_once(':') else {
        return false;
    };
    const MOVING: [&str; 7] = [
        "latest", "stable", "edge", "nightly", "main", "master", "rolling",
    ];
    !MOVING.contains(&tag) && tag.chars().any(|c| c.is_ascii_digit())
}

/// Every image a Dockerfile starts from (stages it names itself aside).
fn dockerfile_images(text: &str) -> Vec<String> {
    let mut stages = BTreeSet::new();
    let mut images = Vec::new();
    for line in text.lines() {
        let Some(from) = line.strip_prefix("FROM ") else {
            continue;
        };
        let words: Vec<&str> = from
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        if !stages.contains(words[0]) {
            images.push(words[0].to_string());
        }
        if let [_, as_, stage] = words[..] {
            if as_.eq_ignore_ascii_case("as") {
                stages.insert(stage);
            }
        }
    }
    images
}

/// The host of a URL (`scheme://user:pass@host:port/path`).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let hostport = authority.rsplit('@').next().unwrap_or(authority);
    hostport.split(':').next().unwrap_or(hostport).to_string()
}

/// The condition under which `svc` waits for `other` (`depends_on`), if it does.
fn waits_for(svc: &Value, other: &str) -> Option<String> {
    match &svc["depends_on"] {
        Value::Sequence(names) => names
            .iter()
            .any(|n| scalar(n) == other)
            .then(|| "service_started".to_string()),
        Value::Mapping(m) => m
            .get(other)
            .map(|d| d.get("condition").map_or("service_started".into(), scalar)),
        _ => None,
    }
}

/// All the text of a service's `command` and `entrypoint`.
fn command_text(svc: &Value) -> String {
    ["entrypoint", "command"]
        .iter()
        .map(|k| match &svc[*k] {
            Value::Sequence(words) => words.iter().map(scalar).collect::<Vec<_>>().join(" "),
            Value::Null => String::new(),
            v => scalar(v),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A health check's command line, when it runs a program (`CMD`) or a
/// shell line (`CMD-SHELL`, split on spaces).
fn health_command(svc: &Value) -> Option<Vec<String>> {
    let test = &svc["healthcheck"]["test"];
    let words: Vec<String> = match test {
        Value::Sequence(w) => w.iter().map(scalar).collect(),
        Value::String(s) => vec!["CMD-SHELL".into(), s.clone()],
        _ => return None,
    };
    match words.first().map(String::as_str) {
        Some("CMD") => Some(words[1..].to_vec()),
        Some("CMD-SHELL") => Some(words[1].split_whitespace().map(str::to_owned).collect()),
        _ => None,
    }
}

/// The Dockerfile's `HEALTHCHECK ... CMD ["...", ...]` (the exec form).
fn dockerfile_health_command(text: &str) -> Option<Vec<String>> {
    let line = text.lines().find(|l| l.starts_with("HEALTHCHECK "))?;
    let (_, json) = line.split_once("CMD ")?;
    Some(serde_json::from_str(json).expect("HEALTHCHECK CMD in the exec (JSON) form"))
}

fn runs_strata(argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|p| p == "strata" || p.ends_with("/strata"))
}

fn dockerfile() -> String {
    read(&root().join("compose/Dockerfile"))
}

fn systemd_unit() -> String {
    read(&root().join("ops/systemd/strata.service"))
}

/// The systemd unit's `Environment=` settings.
fn systemd_environment(unit: &str) -> HashMap<String, String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .flat_map(str::split_whitespace)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("Environment=K=V");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn every_strata_variable_the_files_name_is_a_known_setting() {
    let mut texts: Vec<(String, String)> = compose_files()
        .keys()
        .map(|name| {
            let path = root().join("compose").join(name);
            (format!("compose/{name}"), read(&path))
        })
        .collect();
    for path in [
        "compose/Dockerfile",
        "compose/Caddyfile",
        "ops/systemd/strata.service",
    ] {
        texts.push((path.to_string(), read(&root().join(path))));
    }
    let mut seen = BTreeSet::new();
    for (path, text) in &texts {
        let names = strata_names(text);
        let unknown = unknown_settings(&names);
        assert!(
            unknown.is_empty(),
            "{path} names STRATA_* variables the daemon does not know (it would refuse to start): {unknown:?}"
        );
        seen.extend(names);
    }
    // The files do configure the daemon through these (so the check above
    // looked at something).
    for name in ["STRATA_DATABASE_URL", "STRATA_LISTEN", "STRATA_DATA_DIR"] {
        assert!(seen.contains(name), "no file sets {name}");
    }
}

#[test]
fn each_daemon_gets_a_configuration_it_accepts() {
    for (name, doc) in compose_files() {
        let env = daemon_environment(service(&doc, DAEMON));
        config_of(&name, &env);
    }
    let unit = systemd_unit();
    let env = systemd_environment(&unit);
    assert!(
        env.contains_key("STRATA_DATA_DIR"),
        "the unit sets the data dir"
    );
    let config = config_of("ops/systemd/strata.service", &env);
    assert_eq!(
        config.data_dir,
        Path::new("/var/lib/strata"),
        "the unit's StateDirectory"
    );
    assert!(unit.contains("StateDirectory=strata"));
    // The unit starts a command the binary has.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert!(argv[0].ends_with("/strata"), "{exec}");
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(&argv[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "`strata {}` is not a command of the binary: {}",
        argv[1..].join(" "),
        String::from_utf8_lossy(&help.stderr)
    );
}

#[test]
fn the_server_stack_holds_every_service_its_daemon_uses() {
    let files = compose_files();
    let doc = &files[SERVER];
    let all = services(doc);
    let daemon = service(doc, DAEMON);
    let env = daemon_environment(daemon);
    let config = config_of(SERVER, &env);
    let has = |host: &str| all.contains_key(host);
    let mut used = Vec::new();

    // PostgreSQL, healthy before the daemon starts.
    assert!(
        config.database_url.starts_with("postgres://"),
        "the server stack runs server mode"
    );
    let pg = host_of(&config.database_url);
    assert!(has(&pg), "STRATA_DATABASE_URL names {pg}, not a service");
    assert_eq!(
        waits_for(daemon, &pg).as_deref(),
        Some("service_healthy"),
        "{DAEMON} must wait for {pg} to be healthy"
    );
    used.push(pg);

    // S3 (MinIO): the endpoint is a service, and each bucket the daemon
    // writes to is made by a one-off service it waits for.
    let endpoint = env
        .get("STRATA_S3_ENDPOINT")
        .expect("s3:// URLs need STRATA_S3_ENDPOINT");
    let s3 = host_of(endpoint);
    assert!(has(&s3), "STRATA_S3_ENDPOINT names {s3}, not a service");
    for url in [config.blob_url.as_str(), config.backup_url()] {
        let bucket = url
            .strip_prefix("s3://")
            .unwrap_or_else(|| panic!("{url}: the server stack keeps blobs on S3"))
            .split('/')
            .next()
            .unwrap();
        let maker = all.iter().find(|(_, svc)| {
            let text = command_text(svc);
            text.contains(" mb ") && text.contains(&format!("/{bucket}"))
        });
        let (maker, _) = maker.unwrap_or_else(|| panic!("no service makes the bucket {bucket}"));
        let maker = scalar(maker);
        assert_eq!(
            waits_for(daemon, &maker).as_deref(),
            Some("service_completed_successfully"),
            "{DAEMON} must wait for {maker} to have made {bucket}"
        );
    }
    used.push(s3);

    // Meilisearch and Ollama.
    let meili = host_of(config.meili.url.as_deref().expect("STRATA_MEILI_URL"));
    let ollama = host_of(
        config
            .embed
            .ollama_url
            .as_deref()
            .expect("STRATA_OLLAMA_URL"),
    );
    let pull = format!("pull {}", config.embed.model);
    assert!(
        all.values().any(|svc| command_text(svc).contains(&pull)),
        "no service pulls the embedding model {} into Ollama",
        config.embed.model
    );
    for host in [meili, ollama] {
        assert!(
            has(&host),
            "the daemon is configured to use {host}, not a service"
        );
        assert!(
            waits_for(daemon, &host).is_some(),
            "{DAEMON} does not start after {host}"
        );
        used.push(host);
    }
    assert_eq!(used.len(), 4);
}

#[test]
fn every_image_is_pinned_to_a_release() {
    let mut checked = 0;
    let mut dockerfiles = BTreeSet::new();
    for (name, doc) in compose_files() {
        for (svc_name, svc) in services(&doc) {
            let svc_name = scalar(svc_name);
            if let Some(image) = svc.get("image") {
                let image = scalar(image);
                assert!(
                    pinned(&image),
                    "compose/{name}: {svc_name} runs {image}, not a pinned release"
                );
                checked += 1;
            } else {
                let file = built_dockerfile(svc).unwrap_or_else(|| {
                    panic!("compose/{name}: {svc_name} has neither image nor build")
                });
                assert!(
                    file.is_file(),
                    "compose/{name}: {svc_name} builds {}, which is not there",
                    file.display()
                );
                dockerfiles.insert(file.canonicalize().unwrap());
            }
        }
    }
    assert!(dockerfiles.contains(&root().join("compose/Dockerfile").canonicalize().unwrap()));
    for file in dockerfiles {
        for image in dockerfile_images(&read(&file)) {
            assert!(
                pinned(&image),
                "{} starts from {image}, not a pinned release",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} images seen");
}

#[test]
fn the_data_directory_is_a_volume() {
    let text = dockerfile();
    let data_dir = dockerfile_env(&text)
        .remove("STRATA_DATA_DIR")
        .expect("the image sets STRATA_DATA_DIR");
    let volume = text
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("the Dockerfile declares a VOLUME");
    let volumes: Vec<String> = serde_json::from_str(volume)
        .unwrap_or_else(|_| volume.split_whitespace().map(str::to_owned).collect());
    assert!(
        volumes.contains(&data_dir),
        "VOLUME {volumes:?} does not hold the data dir {data_dir}"
    );

    // The SQLite stack: the database is in a named volume it declares.
    let files = compose_files();
    let doc = &files[SQLITE];
    assert_eq!(services(doc).len(), 1, "{SQLITE} is one service");
    let daemon = service(doc, DAEMON);
    let config = config_of(SQLITE, &daemon_environment(daemon));
    let db = config
        .database_url
        .strip_prefix("sqlite://")
        .expect("the SQLite stack runs embedded mode");
    let mounts: Vec<(String, String)> = daemon["volumes"]
        .as_sequence()
        .expect("the daemon mounts a volume")
        .iter()
        .map(|m| {
            let m = scalar(m);
            let mut parts = m.split(':');
            (
                parts.next().unwrap().to_string(),
                parts.next().expect("source:target").to_string(),
            )
        })
        .collect();
    let (name, target) = mounts
        .iter()
        .find(|(_, target)| Path::new(db).starts_with(target))
        .unwrap_or_else(|| panic!("{db} is in no volume of {mounts:?}"));
    assert!(
        doc["volumes"].get(name.as_str()).is_some(),
        "{name} (mounted at {target}) is not a named volume of {SQLITE}"
    );
    assert_eq!(Path::new(target), Path::new(&data_dir));
}

#[test]
fn scaling_goes_through_the_proxy() {
    let files = compose_files();
    let doc = &files[SERVER];
    let daemon = service(doc, DAEMON);
    assert!(
        daemon.get("ports").is_none(),
        "{DAEMON} publishes host ports: --scale {DAEMON}=3 could not start three"
    );
    assert!(
        daemon.get("container_name").is_none(),
        "a container name cannot be scaled"
    );
    let listen: std::net::SocketAddr = config_of(SERVER, &daemon_environment(daemon))
        .listen
        .parse()
        .unwrap();

    // The one service that publishes a port is the proxy; its configuration
    // file asks DNS for the daemons by service name, on their port.
    let published: Vec<(String, &Value)> = services(doc)
        .iter()
        .filter(|(_, s)| s.get("ports").is_some())
        .map(|(n, s)| (scalar(n), s))
        .collect();
    assert_eq!(published.len(), 1, "one way in: the proxy");
    let (proxy, svc) = &published[0];
    assert_eq!(
        waits_for(svc, DAEMON).as_deref(),
        Some("service_healthy"),
        "{proxy} starts once a daemon is healthy"
    );
    let config_file = svc["volumes"]
        .as_sequence()
        .expect("the proxy mounts its configuration")
        .iter()
        .map(scalar)
        .find_map(|m| {
            m.strip_prefix("./")
                .map(|p| p.split(':').next().unwrap().to_string())
        })
        .expect("a configuration file beside the compose file");
    let caddyfile = read(&root().join("compose").join(&config_file));
    let upstream = caddyfile
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find_map(|w| match w[..] {
            ["dynamic", "a", name, port, ..] => Some((name.to_string(), port.to_string())),
            _ => None,
        })
        .expect("the proxy finds its upstreams by DNS (`dynamic a SERVICE PORT`)");
    assert_eq!(
        upstream,
        (DAEMON.to_string(), listen.port().to_string()),
        "compose/{config_file} must point at the {DAEMON} service on STRATA_LISTEN's port"
    );
}

/// A daemon on SQLite configured with a Meilisearch stand-in (so readiness
/// has a second service to check and the feed has a consumer), served on
/// a loopback socket.
struct Served {
    standin: MeiliStandin,
    router: axum::Router,
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let standin = MeiliStandin::start(Some("meili-key")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = strata::config::Config::embedded(dir.path());
    config.meili.url = Some(standin.url.clone());
    config.meili.key = Some("meili-key".into());
    let daemon = strata::server::build(config, ADMIN).await.unwrap();
    let router = daemon.router.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(strata::server::run(listener, daemon, async {
        let _ = stopped.await;
    }));
    Served {
        standin,
        router,
        addr,
        stop,
        server,
        _dir: dir,
    }
}

/// Runs a health check's command line with the built binary and the
/// environment its container has, except that the daemon listens on
/// `port` (same host); exit status, standard output and error.
async fn run_check(
    argv: &[String],
    env: &HashMap<String, String>,
    port: u16,
) -> (bool, String, String) {
    let mut env = env.clone();
    let listen = env
        .get("STRATA_LISTEN")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7474".into());
    let host = listen.rsplit_once(':').expect("host:port").0;
    env.insert("STRATA_LISTEN".into(), format!("{host}:{port}"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(&argv[1..])
        .env_clear()
        .envs(&env)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_run_strata_health_and_it_tells_ready_from_not() {
    // Each stack's daemon, and the image itself, check health with
    // `strata`; collected with the environment each runs in.
    let mut checks: Vec<(String, Vec<String>, HashMap<String, String>)> = Vec::new();
    for (name, doc) in compose_files() {
        for (svc_name, svc) in services(&doc) {
            let svc_name = scalar(svc_name);
            match health_command(svc) {
                Some(argv) if runs_strata(&argv) => {
                    checks.push((format!("{name}: {svc_name}"), argv, daemon_environment(svc)))
                }
                _ => assert_ne!(
                    svc_name, DAEMON,
                    "compose/{name}: the daemon's health check must run `strata health`"
                ),
            }
        }
    }
    let text = dockerfile();
    let argv = dockerfile_health_command(&text).expect("the Dockerfile has a HEALTHCHECK");
    assert!(runs_strata(&argv), "the image's HEALTHCHECK runs {argv:?}");
    checks.push(("Dockerfile".into(), argv, dockerfile_env(&text)));
    assert!(checks.len() >= 3);

    let served = serve().await;
    let port = served.addr.port();
    for (what, argv, env) in &checks {
        let (ok, out, err) = run_check(argv, env, port).await;
        assert!(
            ok,
            "{what}: {argv:?} fails against a ready daemon:\n{out}{err}"
        );
        assert!(out.contains("ready"), "{what}: {out}");
    }

    // Not ready: a service the daemon needs is down; the check says which.
    let (what, argv, env) = &checks[0];
    served.standin.set_down(true);
    let (ok, _, err) = run_check(argv, env, port).await;
    assert!(!ok, "{what}: passes while Meilisearch is down");
    assert!(err.contains("503") && err.contains("meilisearch"), "{err}");
    served.standin.set_down(false);
    assert!(run_check(argv, env, port).await.0, "{what}: ready again");

    // Gone: nothing listens; the check says it got no answer.
    let _ = served.stop.send(());
    served.server.await.unwrap().unwrap();
    let (ok, _, err) = run_check(argv, env, port).await;
    assert!(!ok, "{what}: passes with no daemon");
    assert!(err.contains("did not answer"), "{err}");
}

/// What a daemon renders on `/metrics`: every name a query may use (with a
/// histogram's `_bucket`, `_sum`, `_count`) and, per sample name, each
/// label with the values seen.
#[derive(Default)]
struct Rendered {
    names: BTreeSet<String>,
    labels: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

fn parse_metrics(text: &str) -> Rendered {
    let mut r = Rendered::default();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut w = t.split_whitespace();
            let (name, kind) = (w.next().unwrap(), w.next().unwrap());
            r.names.insert(name.to_string());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    r.names.insert(format!("{name}{suffix}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let labels = r.labels.entry(name.to_string()).or_default();
            if line[name_end..].starts_with('{') {
                let inner = &line[name_end + 1..line.find('}').unwrap()];
                for m in matchers(inner) {
                    labels.entry(m.key).or_default().insert(m.value);
                }
            }
        }
    }
    r
}

/// One label matcher of a selector: `key op "value"`.
struct Matcher {
    key: String,
    op: String,
    value: String,
}

/// `k="v", k2=~"v2"`, each matcher.
fn matchers(inner: &str) -> Vec<Matcher> {
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let op_at = rest.find(['=', '!']).expect("a label matcher");
        let key = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let op_len =
            if after.starts_with("=~") || after.starts_with("!=") || after.starts_with("!~") {
                2
            } else {
                1
            };
        let op = after[..op_len].to_string();
        let value_part = after[op_len..].trim_start();
        let body = value_part.strip_prefix('"').expect("a quoted label value");
        let close = body.find('"').expect("a closed label value");
        out.push(Matcher {
            key,
            op,
            value: body[..close].to_string(),
        });
        rest = body[close + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim();
    }
    out
}

/// Each `strata_*` metric a query text names, with the label matchers
/// written right after it.
fn referenced(text: &str) -> Vec<(String, Vec<Matcher>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("strata_") {
        let before = text.len() - rest.len() + at;
        let prior = text[..before].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        // Part of a longer word (`my_strata_x`) is not a reference.
        if !prior.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            let name = tail[..end].to_string();
            let labels = match tail[end..].strip_prefix('{') {
                Some(inner) => matchers(&inner[..inner.find('}').expect("a closed selector")]),
                None => Vec::new(),
            };
            out.push((name, labels));
        }
        rest = &tail[end..];
    }
    out
}

/// Problems of the metric references in `text` against what is rendered.
fn reference_problems(text: &str, rendered: &Rendered) -> Vec<String> {
    // Labels Prometheus adds to every series it scrapes.
    const TARGET_LABELS: [&str; 2] = ["job", "instance"];
    let mut problems = Vec::new();
    for (name, labels) in referenced(text) {
        if !rendered.names.contains(&name) {
            problems.push(format!("{name} is not rendered"));
            continue;
        }
        let Some(seen) = rendered.labels.get(&name) else {
            continue;
        };
        for Matcher { key, op, value } in labels {
            if TARGET_LABELS.contains(&key.as_str()) {
                continue;
            }
            match seen.get(&key) {
                None => problems.push(format!("{name} has no label {key}")),
                Some(values) if op == "=" && !value.contains('$') && !values.contains(&value) => {
                    problems.push(format!(
                        "{name}{{{key}=\"{value}\"}} matches nothing: {key} is one of {values:?}"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    problems
}

/// Every string in a JSON document.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_name_only_what_the_daemon_renders() {
    let served = serve().await;
    let metrics = || async {
        let (status, body) = support::request(
            &served.router,
            ADMIN,
            "GET",
            "/metrics",
            "text/plain",
            vec![],
        )
        .await;
        assert_eq!(status, 200);
        body
    };
    // Once started, the Meilisearch consumer is reported with its label.
    support::eventually(std::time::Duration::from_secs(10), || async {
        metrics()
            .await
            .contains("strata_feed_consumer_lag_seconds{")
    })
    .await;
    let rendered = parse_metrics(&metrics().await);

    // Alert rules: each one complete, its runbook there, its metrics real.
    let path = root().join("ops/monitoring/alerts.yml");
    let alerts: Value = serde_yaml::from_str(&read(&path)).expect("alerts.yml is YAML");
    let mut rules = 0;
    let mut names = 0;
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = scalar(&rule["alert"]);
            let expr = scalar(&rule["expr"]);
            assert!(!expr.trim().is_empty(), "{alert} has no expr");
            let severity = scalar(&rule["labels"]["severity"]);
            assert!(
                ["critical", "warning"].contains(&severity.as_str()),
                "{alert}: severity {severity:?}"
            );
            assert!(
                !scalar(&rule["annotations"]["summary"]).is_empty(),
                "{alert} has no summary"
            );
            if let Some(runbook) = rule["annotations"].get("runbook") {
                let runbook = scalar(runbook);
                assert!(
                    root().join(&runbook).is_file(),
                    "{alert}: runbook {runbook} is not there"
                );
            }
            let mut text = expr.clone();
            for v in rule["annotations"].as_mapping().unwrap().values() {
                text.push('\n');
                text.push_str(&scalar(v));
            }
            let problems = reference_problems(&text, &rendered);
            assert!(problems.is_empty(), "alert {alert}: {problems:?}");
            names += referenced(&expr).len();
            rules += 1;
        }
    }
    assert!(
        rules >= 5 && names >= 10,
        "{rules} rules naming {names} Strata metrics"
    );

    // The dashboard: every query (and every text) names real metrics.
    let path = root().join("ops/monitoring/dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)).expect("dashboard.json is JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    let mut strings = Vec::new();
    json_strings(&dashboard, &mut strings);
    let text = strings.join("\n");
    let problems = reference_problems(&text, &rendered);
    assert!(problems.is_empty(), "dashboard.json: {problems:?}");
    let shown: BTreeSet<String> = referenced(&text).into_iter().map(|(n, _)| n).collect();
    assert!(shown.len() >= 10, "the dashboard shows {shown:?}");

    // The runbooks the issue asks for, and the restore one points at the
    // backup documentation that exists.
    for runbook in ["restore", "failover", "stuck-job", "disk-full"] {
        assert!(root().join(format!("ops/runbooks/{runbook}.md")).is_file());
    }
    let restore = read(&root().join("ops/runbooks/restore.md"));
    assert!(restore.contains("ops/PGBACKREST.md") && root().join("ops/PGBACKREST.md").is_file());
    assert!(
        restore.contains("README, section Backups")
            && read(&root().join("README.md")).contains("\n## Backups\n")
    );
}

/// The checks above catch what they look for: each is shown a broken input.
#[test]
fn the_checks_fail_on_broken_files() {
    // An unknown setting is found, in a key or an interpolation.
    let names =
        strata_names("STRATA_LISTEN: x\nSTRATA_LISTN: y\nkey: ${STRATA_PORT:-1} (STRATA_*)");
    assert_eq!(unknown_settings(&names), ["STRATA_LISTN", "STRATA_PORT"]);
    // A refused value stops the configuration.
    let env = HashMap::from([("STRATA_AGE".to_string(), "maybe".to_string())]);
    assert!(strata::config::Config::from_vars(env).is_err());
    // Moving or missing tags are not pins.
    for image in [
        "minio/minio:latest",
        "caddy",
        "localhost:5000/caddy",
        "debian:bookworm-slim",
        "ollama/ollama:edge",
    ] {
        assert!(!pinned(image), "{image}");
    }
    for image in [
        "caddy:2.10.2-alpine",
        "localhost:5000/caddy:2.10.2",
        "x/y@sha256:0123",
    ] {
        assert!(pinned(image), "{image}");
    }
    assert_eq!(
        dockerfile_images("FROM rust:1.95 AS build\nFROM build\nFROM debian:latest"),
        ["rust:1.95", "debian:latest"]
    );
    // Interpolation as compose does it.
    assert_eq!(
        interpolate("postgres://u:${P:?set P}@db/x ${K:-} $${M}"),
        format!("postgres://u:{PLACEHOLDER}@db/x  ${{M}}")
    );
    assert_eq!(host_of("postgres://u:p@db.internal:5432/x"), "db.internal");
    // A health check is read as the command it runs.
    let svc: Value = serde_yaml::from_str("healthcheck: {test: [CMD, strata, health]}").unwrap();
    assert_eq!(health_command(&svc).unwrap(), ["strata", "health"]);
    let svc: Value = serde_yaml::from_str("healthcheck: {test: [CMD-SHELL, curl -f x]}").unwrap();
    assert!(!runs_strata(&health_command(&svc).unwrap()));
    // Metrics: unknown names, unknown labels and values that match nothing.
    let rendered = parse_metrics(
        "# TYPE strata_a_total counter\nstrata_a_total{class=\"5xx\"} 0\n# TYPE strata_h histogram\nstrata_h_bucket{le=\"+Inf\"} 0\n",
    );
    assert!(reference_problems(
        "rate(strata_a_total{class=\"5xx\", job=\"s\"}[5m]) + strata_h_bucket",
        &rendered
    )
    .is_empty());
    assert_eq!(
        reference_problems("strata_b_total + my_strata_b", &rendered),
        ["strata_b_total is not rendered"]
    );
    assert_eq!(
        reference_problems("strata_a_total{route=\"x\"}", &rendered).len(),
        1
    );
    assert_eq!(
        reference_problems("strata_a_total{class=\"5XX\"}", &rendered).len(),
        1
    );
}
