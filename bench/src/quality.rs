//! Search quality: recall@10 and MRR of `mode=text|semantic|hybrid` on a
//! generated corpus whose relevant entities are known.
//!
//! The corpus is built from concept groups, each with several surface forms
//! (car / automobile / vehicle / sedan). An entity is about one concept (and
//! about a second one half the time), names each of its concepts with one
//! surface form, and pads its `title` and `body` with a neutral vocabulary
//! shared by all entities; a few entities are filler only. The entities
//! relevant to a concept are all those about it, whichever form they use.
//! Forms are drawn 60 % the first, 5 % the last when a concept has three or
//! more (the "held-out" form), the rest shared by the others.
//!
//! Query kinds (relevant set: the entities about the query's concept(s)):
//! - `exact`: the concept's first form, which most relevant entities contain.
//! - `synonym`: the held-out form, which ~5 % of the relevant entities
//!   contain: the case semantic search exists for.
//! - `typo`: one edit (substitution, deletion, insertion or transposition,
//!   never of the first or last letter) in a form of five letters or more.
//! - `multi`: the first forms of two concepts; relevant: entities about both.
//! - `stem`: a regular English inflection of a form ("sofas", "running"):
//!   SQLite FTS5 (porter) and PostgreSQL's `english` configuration stem
//!   English only, so there are no other-language stems to test.
//!
//! recall@10 = |relevant ∩ top 10| / min(|relevant|, 10); MRR = 1 / rank of
//! the first relevant hit (0 without one), both averaged over the queries.
//! A concept has ~50 relevant entities at 3,000, so recall@10 is then the
//! share of relevant entities in the top 10. Each kind's `coverage` (share of
//! relevant entities whose text holds every query word) is reported too.
//!
//! The run loads the corpus, then waits until every change-feed consumer has
//! no lag and has passed the project's last change, and until semantic
//! search finds the last entity loaded by its title (unless that mode is not
//! served). A mode that answers 501 is reported as not served.

use crate::daemon::{Daemon, DaemonOpts};
use crate::http::Conn;
use crate::load::{project_path, setup_project};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The analyzers' limit, printed with the results.
const STEM_NOTE: &str = "stem queries are English inflections only: SQLite FTS5 (porter) and PostgreSQL's `english` configuration stem no other language";

struct Concept {
    /// The first is the common form, the last (of three or more) the rare one.
    forms: &'static [&'static str],
    /// A regular inflection of one of the forms, for `stem` queries.
    inflected: Option<&'static str>,
}

const fn c(forms: &'static [&'static str], inflected: Option<&'static str>) -> Concept {
    Concept { forms, inflected }
}

/// No form's root is a prefix of another concept's form or of a filler word
/// (a test checks it), so a text match on a form means its concept.
const CONCEPTS: &[Concept] = &[
    c(&["car", "automobile", "vehicle", "sedan"], Some("cars")),
    c(&["doctor", "physician", "practitioner"], Some("doctors")),
    c(&["sofa", "couch", "settee"], Some("sofas")),
    c(&["movie", "film", "cinema"], Some("movies")),
    c(
        &["lawyer", "attorney", "solicitor", "counsel"],
        Some("lawyers"),
    ),
    c(&["purchase", "buy", "acquire"], Some("purchased")),
    c(&["large", "big", "huge", "enormous"], None),
    c(&["child", "kid", "youngster", "toddler"], Some("kids")),
    c(&["bicycle", "bike", "cycle"], Some("bicycles")),
    c(&["phone", "telephone", "cellphone"], Some("phones")),
    c(&["house", "residence", "dwelling"], Some("houses")),
    c(&["dog", "puppy", "hound", "canine"], Some("dogs")),
    c(&["cat", "kitten", "feline"], Some("cats")),
    c(&["shoe", "sneaker", "footwear"], Some("shoes")),
    c(&["run", "jog", "sprint"], Some("running")),
    c(
        &["job", "occupation", "profession", "vocation"],
        Some("jobs"),
    ),
    c(&["money", "cash", "currency"], None),
    c(
        &["teacher", "instructor", "educator", "tutor"],
        Some("teachers"),
    ),
    c(&["student", "pupil", "learner"], Some("students")),
    c(&["road", "street", "highway", "avenue"], Some("roads")),
    c(&["ship", "boat", "vessel"], Some("ships")),
    c(&["airplane", "aircraft", "jet"], Some("airplanes")),
    c(
        &["rain", "rainfall", "downpour", "drizzle"],
        Some("raining"),
    ),
    c(&["storm", "tempest", "hurricane"], Some("storms")),
    c(&["happy", "joyful", "cheerful", "glad"], None),
    c(&["sad", "unhappy", "gloomy", "sorrowful"], None),
    c(&["fast", "quick", "rapid", "speedy"], None),
    c(&["start", "begin", "commence"], Some("started")),
    c(&["finish", "conclude", "complete"], Some("finished")),
    c(&["help", "assist", "aid", "support"], Some("helping")),
    c(&["error", "mistake", "fault", "bug"], Some("errors")),
    c(&["repair", "fix", "mend"], Some("repaired")),
    c(&["talk", "speak", "converse"], Some("talking")),
    c(&["smart", "intelligent", "clever", "bright"], None),
    c(&["old", "ancient", "elderly", "aged"], None),
    c(&["shop", "boutique", "retailer", "outlet"], Some("shops")),
    c(&["meal", "food", "dish", "cuisine"], Some("meals")),
    c(&["beverage", "drink", "refreshment"], Some("drinks")),
    c(&["coffee", "espresso", "cappuccino"], None),
    c(&["hospital", "clinic", "infirmary"], Some("hospitals")),
    c(
        &["medicine", "medication", "remedy", "drug"],
        Some("medicines"),
    ),
    c(
        &["illness", "disease", "sickness", "ailment"],
        Some("illnesses"),
    ),
    c(&["pain", "ache", "soreness"], Some("pains")),
    c(
        &["computer", "laptop", "desktop", "notebook"],
        Some("computers"),
    ),
    c(&["software", "program", "application"], Some("programs")),
    c(
        &["photo", "photograph", "picture", "snapshot"],
        Some("photos"),
    ),
    c(&["music", "song", "melody", "tune"], Some("songs")),
    c(&["book", "novel", "paperback"], Some("books")),
    c(&["shirt", "blouse", "tunic"], Some("shirts")),
    c(&["jacket", "coat", "parka", "blazer"], Some("jackets")),
    c(&["hat", "beanie", "bonnet", "fedora"], Some("hats")),
    c(&["garden", "yard", "backyard"], Some("gardens")),
    c(&["flower", "blossom", "bloom"], Some("flowers")),
    c(&["river", "stream", "creek", "brook"], Some("rivers")),
    c(&["mountain", "peak", "summit", "hill"], Some("mountains")),
    c(&["forest", "woods", "woodland", "jungle"], Some("forests")),
    c(&["beach", "shore", "coast", "seaside"], Some("beaches")),
    c(
        &["city", "town", "metropolis", "municipality"],
        Some("cities"),
    ),
    c(&["village", "hamlet", "settlement"], Some("villages")),
    c(
        &["friend", "buddy", "companion", "comrade"],
        Some("friends"),
    ),
    c(&["boss", "manager", "supervisor"], Some("bosses")),
    c(
        &["worker", "employee", "staff", "personnel"],
        Some("workers"),
    ),
    c(
        &["meeting", "conference", "gathering", "assembly"],
        Some("meetings"),
    ),
    c(&["trip", "journey", "voyage", "excursion"], Some("trips")),
    c(&["hotel", "motel", "lodge", "hostel"], Some("hotels")),
    c(
        &["police", "officer", "constable", "sheriff"],
        Some("officers"),
    ),
    c(&["thief", "burglar", "robber", "crook"], Some("burglars")),
    c(&["gift", "present", "offering"], Some("gifts")),
    c(&["price", "cost", "tariff"], Some("prices")),
    c(&["salary", "wage", "earnings", "income"], Some("salaries")),
    c(&["question", "query", "inquiry"], Some("questions")),
    c(&["answer", "response", "retort"], Some("answers")),
    c(&["idea", "thought", "notion"], Some("ideas")),
    c(
        &["problem", "issue", "trouble", "difficulty"],
        Some("problems"),
    ),
    c(&["danger", "hazard", "risk", "peril"], Some("dangers")),
    c(&["cold", "freezing", "frosty", "wintry"], None),
    c(&["fight", "battle", "combat", "brawl"], Some("fighting")),
    c(&["king", "monarch", "sovereign"], Some("kings")),
    c(&["baby", "infant", "newborn"], Some("babies")),
    c(&["chair", "seat", "stool"], Some("chairs")),
    c(&["lamp", "lantern", "torch"], Some("lamps")),
    c(&["garbage", "trash", "rubbish", "waste"], None),
    c(
        &["bathroom", "restroom", "lavatory", "toilet"],
        Some("bathrooms"),
    ),
    c(&["vacation", "holiday", "getaway"], Some("vacations")),
    c(&["wedding", "marriage", "nuptials"], Some("weddings")),
    c(&["funny", "humorous", "comical", "hilarious"], None),
    c(&["scary", "frightening", "terrifying", "spooky"], None),
    c(&["rich", "wealthy", "affluent", "prosperous"], None),
    c(&["noise", "racket", "clamor", "commotion"], Some("noises")),
    c(&["shout", "yell", "scream", "holler"], Some("shouting")),
    c(&["walk", "stroll", "hike", "wander"], Some("walking")),
    c(&["sleep", "nap", "slumber", "doze"], Some("sleeping")),
    c(
        &["rule", "regulation", "guideline", "directive"],
        Some("rules"),
    ),
    c(&["truck", "lorry"], Some("trucks")),
    c(&["rabbit", "bunny", "hare"], Some("rabbits")),
    c(&["horse", "stallion", "pony"], Some("horses")),
    c(&["pig", "hog", "swine"], Some("pigs")),
    c(&["cake", "pastry", "gateau"], Some("cakes")),
];

/// Words about nothing in particular, shared by every entity.
const FILLER_ADJ: &[&str] = &[
    "weekly", "monthly", "annual", "internal", "general", "simple", "brief", "initial", "second",
    "recent", "various", "several", "shared", "archived", "pending", "basic", "standard", "extra",
    "minor", "main", "usual", "typical", "overall", "formal", "informal", "numbered", "purple",
    "green", "blue", "orange", "northern", "southern", "eastern", "western",
];
const FILLER_NOUN: &[&str] = &[
    "notes",
    "update",
    "summary",
    "plan",
    "list",
    "overview",
    "draft",
    "details",
    "checklist",
    "schedule",
    "record",
    "report",
    "memo",
    "reminder",
    "entry",
    "version",
    "section",
    "status",
    "team",
    "project",
    "item",
    "page",
    "document",
    "file",
    "folder",
    "number",
    "reference",
    "index",
    "sample",
    "example",
    "appendix",
    "format",
    "revision",
    "outline",
    "morning",
    "afternoon",
    "evening",
    "monday",
    "tuesday",
    "friday",
    "january",
    "april",
    "october",
];
const FILLER_LINK: &[&str] = &[
    "about",
    "regarding",
    "including",
    "following",
    "with",
    "for",
    "from",
    "and",
    "also",
    "then",
    "still",
    "again",
    "later",
    "soon",
    "written",
    "kept",
    "noted",
    "prepared",
    "attached",
    "listed",
    "mentioned",
    "based",
    "related",
    "every",
    "each",
    "other",
    "another",
];

const TYPES: &[&str] = &["product", "article", "note"];

/// Loaded last: once semantic search finds it, the embeddings caught up.
const SENTINEL_ID: &str = "quality-sentinel";
const SENTINEL_TITLE: &str = "Sentinel lighthouse zebra marmalade";

struct Doc {
    id: String,
    ty: &'static str,
    title: String,
    body: String,
    concepts: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Exact,
    Synonym,
    Typo,
    Multi,
    Stem,
}

const KINDS: [Kind; 5] = [
    Kind::Exact,
    Kind::Synonym,
    Kind::Typo,
    Kind::Multi,
    Kind::Stem,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Synonym => "synonym",
            Kind::Typo => "typo",
            Kind::Multi => "multi",
            Kind::Stem => "stem",
        }
    }
}

struct Query {
    kind: Kind,
    text: String,
    relevant: HashSet<String>,
    /// Share of the relevant entities whose text holds every query word.
    coverage: f64,
}

// ---- corpus ----------------------------------------------------------------

/// The index of the rare form, if the concept has one.
fn held_out(c: &Concept) -> Option<usize> {
    (c.forms.len() >= 3).then(|| c.forms.len() - 1)
}

fn pick_form(c: &Concept, r: &mut StdRng) -> &'static str {
    let x: f64 = r.random();
    if x < 0.6 {
        return c.forms[0];
    }
    match held_out(c) {
        Some(last) if x < 0.65 => c.forms[last],
        Some(last) => c.forms[r.random_range(1..last)],
        None => c.forms[r.random_range(1..c.forms.len())],
    }
}

fn pick<'a>(r: &mut StdRng, words: &[&'a str]) -> &'a str {
    words[r.random_range(0..words.len())]
}

/// `n` filler words, nouns and link words mixed.
fn filler(r: &mut StdRng, n: usize) -> Vec<&'static str> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                pick(r, FILLER_NOUN)
            } else {
                pick(r, FILLER_LINK)
            }
        })
        .collect()
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|f| f.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// An entity's concepts: none (8 %), one, or one plus one of the next three
/// concepts (a neighbour), so that pairs for `multi` queries co-occur.
fn concepts_of(r: &mut StdRng) -> Vec<usize> {
    if r.random_bool(0.08) {
        return vec![];
    }
    let first = r.random_range(0..CONCEPTS.len());
    if r.random_bool(0.5) {
        let second = (first + r.random_range(1..=3)) % CONCEPTS.len();
        return vec![first, second];
    }
    vec![first]
}

fn doc(seed: u64, i: usize) -> Doc {
    let mut r = crate::gen::rng(seed, 0x5154_0000 + i as u64);
    let concepts = concepts_of(&mut r);
    let forms: Vec<&str> = concepts
        .iter()
        .map(|&k| pick_form(&CONCEPTS[k], &mut r))
        .collect();
    let head = forms
        .first()
        .copied()
        .unwrap_or_else(|| pick(&mut r, FILLER_NOUN));
    let title = capitalised(&format!(
        "{} {head} {}",
        pick(&mut r, FILLER_ADJ),
        pick(&mut r, FILLER_NOUN)
    ));
    let lengths = [3..=6, 2..=4, 1..=3].map(|n| r.random_range(n));
    let mut body = filler(&mut r, lengths[0]);
    body.extend(forms.iter().take(1));
    body.extend(filler(&mut r, lengths[1]));
    body.extend(forms.iter().skip(1));
    body.extend(filler(&mut r, lengths[2]));
    Doc {
        id: format!("q{i}"),
        ty: pick(&mut r, TYPES),
        title,
        body: body.join(" ") + ".",
        concepts,
    }
}

fn corpus(seed: u64, n: usize) -> Vec<Doc> {
    (0..n).map(|i| doc(seed, i)).collect()
}

fn sentinel() -> Doc {
    Doc {
        id: SENTINEL_ID.into(),
        ty: "note",
        title: SENTINEL_TITLE.into(),
        body: "marker entity loaded last".into(),
        concepts: vec![],
    }
}

fn create_op(d: &Doc) -> String {
    json!({
        "op": "create_entity", "id": d.id, "type": d.ty,
        "properties": {"title": d.title, "body": d.body},
    })
    .to_string()
}

// ---- labelled queries ------------------------------------------------------

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Relevant ids per concept, and each entity's words (for coverage).
struct Labels {
    about: Vec<Vec<usize>>,
    words: Vec<HashSet<String>>,
    ids: Vec<String>,
}

impl Labels {
    fn new(docs: &[Doc]) -> Labels {
        let mut about = vec![Vec::new(); CONCEPTS.len()];
        for (i, d) in docs.iter().enumerate() {
            for &k in &d.concepts {
                about[k].push(i);
            }
        }
        Labels {
            about,
            words: docs
                .iter()
                .map(|d| words(&format!("{} {}", d.title, d.body)))
                .collect(),
            ids: docs.iter().map(|d| d.id.clone()).collect(),
        }
    }

    /// Entities about every concept in `concepts`.
    fn relevant(&self, concepts: &[usize]) -> Vec<usize> {
        let (first, rest) = concepts.split_first().expect("a concept");
        self.about[*first]
            .iter()
            .copied()
            .filter(|i| rest.iter().all(|k| self.about[*k].contains(i)))
            .collect()
    }

    fn coverage(&self, relevant: &[usize], text: &str) -> f64 {
        let q = words(text);
        let hits = relevant
            .iter()
            .filter(|&&i| q.iter().all(|w| self.words[i].contains(w)))
            .count();
        hits as f64 / relevant.len().max(1) as f64
    }

    fn query(&self, kind: Kind, text: String, concepts: &[usize]) -> Option<Query> {
        let relevant = self.relevant(concepts);
        let min = if kind == Kind::Multi { 2 } else { 1 };
        (relevant.len() >= min).then(|| Query {
            kind,
            coverage: self.coverage(&relevant, &text),
            relevant: relevant.iter().map(|&i| self.ids[i].clone()).collect(),
            text,
        })
    }
}

/// Every word of the vocabulary, so a typo never lands on a real word.
fn vocabulary() -> HashSet<&'static str> {
    CONCEPTS
        .iter()
        .flat_map(|c| c.forms.iter().copied())
        .chain(FILLER_ADJ.iter().copied())
        .chain(FILLER_NOUN.iter().copied())
        .chain(FILLER_LINK.iter().copied())
        .collect()
}

/// One edit strictly inside `word` (first and last letters kept).
fn typo(word: &str, r: &mut StdRng, vocab: &HashSet<&str>) -> String {
    let letters: Vec<char> = word.chars().collect();
    loop {
        let mut w = letters.clone();
        let (op, last) = (r.random_range(0..4), letters.len() - 1);
        // A transposition moves two letters: both must be interior.
        let at = r.random_range(1..if op == 3 { last - 1 } else { last });
        let other = r.random_range(b'a'..=b'z') as char;
        match op {
            0 => w[at] = other,
            1 => {
                w.remove(at);
            }
            2 => w.insert(at, other),
            _ => w.swap(at, at + 1),
        }
        let w: String = w.into_iter().collect();
        if w != word && !vocab.contains(w.as_str()) {
            return w;
        }
    }
}

/// Queries of concept `k`, every kind but `multi`.
fn concept_queries(labels: &Labels, k: usize, r: &mut StdRng, vocab: &HashSet<&str>) -> Vec<Query> {
    let c = &CONCEPTS[k];
    let mut out = Vec::new();
    out.extend(labels.query(Kind::Exact, c.forms[0].into(), &[k]));
    // Only the rare form: a commoner one fills a top 10 by itself once a
    // concept has a few dozen entities.
    if let Some(f) = held_out(c) {
        out.extend(labels.query(Kind::Synonym, c.forms[f].into(), &[k]));
    }
    let mut typo_base = c.forms.iter().take(held_out(c).unwrap_or(c.forms.len()));
    if let Some(w) = typo_base.find(|w| w.len() >= 5) {
        out.extend(labels.query(Kind::Typo, typo(w, r, vocab), &[k]));
    }
    if let Some(w) = c.inflected {
        out.extend(labels.query(Kind::Stem, w.into(), &[k]));
    }
    out
}

fn queries(seed: u64, docs: &[Doc]) -> Vec<Query> {
    let labels = Labels::new(docs);
    let vocab = vocabulary();
    let mut r = crate::gen::rng(seed, 0x5155_0000);
    let mut out = Vec::new();
    for (k, c) in CONCEPTS.iter().enumerate() {
        out.extend(concept_queries(&labels, k, &mut r, &vocab));
        let next = (k + 1) % CONCEPTS.len();
        let text = format!("{} {}", c.forms[0], CONCEPTS[next].forms[0]);
        out.extend(labels.query(Kind::Multi, text, &[k, next]));
    }
    out.sort_by_key(|q| q.kind);
    out
}

// ---- scoring ---------------------------------------------------------------

fn recall_at_10(relevant: &HashSet<String>, ranked: &[String]) -> f64 {
    let hits = ranked
        .iter()
        .take(10)
        .filter(|id| relevant.contains(*id))
        .count();
    hits as f64 / relevant.len().clamp(1, 10) as f64
}

fn reciprocal_rank(relevant: &HashSet<String>, ranked: &[String]) -> f64 {
    ranked
        .iter()
        .position(|id| relevant.contains(id))
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

#[derive(Default, Clone, Copy)]
struct Score {
    n: usize,
    recall: f64,
    mrr: f64,
}

impl Score {
    fn add(&mut self, recall: f64, mrr: f64) {
        self.n += 1;
        self.recall += recall;
        self.mrr += mrr;
    }

    fn json(&self) -> Value {
        let n = self.n.max(1) as f64;
        json!({"queries": self.n, "recall_at_10": self.recall / n, "mrr": self.mrr / n})
    }

    fn cell(&self) -> String {
        let n = self.n.max(1) as f64;
        format!("{:.3} / {:.3}", self.recall / n, self.mrr / n)
    }
}

enum Outcome {
    Served {
        overall: Score,
        by_kind: BTreeMap<Kind, Score>,
        p50_ms: f64,
    },
    /// The status and message of the first answer that was not a 2xx.
    NotServed(u16, String),
}

// ---- talking to the daemon -------------------------------------------------

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

enum Answer {
    Ids(Vec<String>),
    /// Not a 2xx: 501 when the configuration cannot serve the mode, 503
    /// when a service it needs is unreachable.
    Refused(u16, String),
}

async fn search(c: &mut Conn, mode: &str, q: &str, limit: usize) -> Result<Answer> {
    let path = project_path(&format!(
        "/search?q={}&mode={mode}&limit={limit}",
        encode(q)
    ));
    let (status, body) = c.get(&path).await?;
    let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = reply["error"]["message"].as_str().map_or_else(
            || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            str::to_owned,
        );
        return Ok(Answer::Refused(status.as_u16(), msg));
    }
    let hits = reply["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    Ok(Answer::Ids(
        hits.iter()
            .filter_map(|h| h["entity"]["id"].as_str().map(str::to_owned))
            .collect(),
    ))
}

async fn run_mode(c: &mut Conn, mode: &str, queries: &[Query]) -> Result<Outcome> {
    let mut overall = Score::default();
    let mut by_kind: BTreeMap<Kind, Score> = BTreeMap::new();
    let mut lat = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let ids = match search(c, mode, &q.text, 10).await? {
            Answer::Ids(ids) => ids,
            Answer::Refused(status, msg) => return Ok(Outcome::NotServed(status, msg)),
        };
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let (recall, rr) = (
            recall_at_10(&q.relevant, &ids),
            reciprocal_rank(&q.relevant, &ids),
        );
        overall.add(recall, rr);
        by_kind.entry(q.kind).or_default().add(recall, rr);
    }
    lat.sort_by(f64::total_cmp);
    Ok(Outcome::Served {
        overall,
        by_kind,
        p50_ms: lat.get(lat.len() / 2).copied().unwrap_or(0.0),
    })
}

/// The newest change sequence of the bench project (None if the daemon has
/// no change feed).
async fn feed_head(c: &mut Conn) -> Result<Option<i64>> {
    let mut after = 0;
    loop {
        let (status, body) = c
            .get(&project_path(&format!("/changes?after={after}&limit=1000")))
            .await?;
        if !status.is_success() {
            return Ok(None);
        }
        let reply: Value = serde_json::from_slice(&body)?;
        let page = reply["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        match page.last().and_then(|ch| ch["seq"].as_i64()) {
            Some(seq) => after = seq,
            None => return Ok(Some(after)),
        }
    }
}

/// No lag alone is not enough: a consumer that has not polled since the
/// load also reports none.
fn consumer_done(report: &Value, head: Option<i64>) -> bool {
    report["lag_seconds"].as_f64() == Some(0.0)
        && head.is_none_or(|h| report["position"].as_i64().is_some_and(|p| p >= h))
}

/// Whether every change-feed consumer has no lag and has passed `head`;
/// with a one-line account of them.
async fn consumers_caught_up(c: &mut Conn, head: Option<i64>) -> Result<(bool, String)> {
    let (_, body) = c.get("/health/ready").await?;
    let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let consumers = reply["checks"]["consumers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let done = consumers.iter().all(|k| consumer_done(k, head));
    let account = consumers
        .iter()
        .map(|k| {
            format!(
                "{} at {} lag {}s",
                k["name"], k["position"], k["lag_seconds"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok((done, format!("[{account}] head {head:?}")))
}

#[derive(PartialEq, Debug)]
enum Probe {
    Found,
    /// Not among the hits, or an error other than 501 (the last one).
    NotYet(Option<String>),
    NotServed,
}

async fn semantic_probe(c: &mut Conn) -> Result<Probe> {
    Ok(match search(c, "semantic", SENTINEL_TITLE, 10).await? {
        Answer::Ids(ids) if ids.iter().any(|id| id == SENTINEL_ID) => Probe::Found,
        Answer::Ids(_) => Probe::NotYet(None),
        Answer::Refused(501, _) => Probe::NotServed,
        Answer::Refused(status, msg) => Probe::NotYet(Some(format!("{status}: {msg}"))),
    })
}

/// Waits until the derived indexes (embeddings, a search mirror) hold
/// everything loaded.
async fn wait_caught_up(d: &Daemon, timeout: Duration) -> Result<(Duration, String)> {
    let start = Instant::now();
    let mut c = Conn::open(&d.addr, &d.key).await?;
    let head = feed_head(&mut c).await?;
    loop {
        let (consumers_done, account) = consumers_caught_up(&mut c, head).await?;
        let probe = semantic_probe(&mut c).await?;
        if consumers_done && !matches!(probe, Probe::NotYet(_)) {
            return Ok((
                start.elapsed(),
                format!("consumers {account}, semantic probe {probe:?}"),
            ));
        }
        if start.elapsed() > timeout {
            bail!(
                "derived indexes did not catch up within {timeout:?}: consumers {account}; \
                 semantic search for the last entity loaded: {probe:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---- the model -------------------------------------------------------------

const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// Installs the local embedding model from `from` into `data_dir` with
/// `strata model fetch --from`, or by copying its files where the binary
/// predates that command. Says which.
fn install_model(opts: &DaemonOpts, data_dir: &Path, from: &Path) -> Result<&'static str> {
    let mut cmd = Command::new(&opts.bin);
    cmd.args(["model", "fetch", "--from"]).arg(from);
    // As for `serve`: the binary refuses STRATA_* variables it does not know.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("STRATA_")) {
        cmd.env_remove(k);
    }
    cmd.env("STRATA_DATA_DIR", data_dir)
        .envs(opts.env.iter().cloned());
    let out = cmd
        .output()
        .with_context(|| format!("run {}", opts.bin.display()))?;
    if out.status.success() {
        return Ok("strata model fetch --from");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("unrecognized subcommand") {
        bail!("strata model fetch --from {}: {stderr}", from.display());
    }
    let dest = data_dir.join("models").join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&dest)?;
    for f in MODEL_FILES {
        std::fs::copy(from.join(f), dest.join(f))
            .with_context(|| format!("copy {} to {}", from.join(f).display(), dest.display()))?;
    }
    Ok("copied (this strata has no `model fetch`)")
}

/// A temp dir of ours, removed on drop unless kept.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The daemon's options with a data dir known before it starts (the model
/// goes in first), and the temp dir to remove afterwards.
fn opts_with_data_dir(ctx: &Ctx) -> Result<(DaemonOpts, TempDir)> {
    let mut opts = ctx.daemon_opts();
    if opts.data_dir.is_some() {
        return Ok((opts, TempDir(None)));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let tmp = std::env::temp_dir().join(format!("strata-quality-{}-{nanos}", std::process::id()));
    opts.data_dir = Some(tmp.join("data"));
    let own = TempDir((!opts.keep).then_some(tmp));
    Ok((opts, own))
}

// ---- the run ---------------------------------------------------------------

pub struct Opts {
    pub entities: usize,
    pub model_dir: Option<PathBuf>,
    pub out: Option<PathBuf>,
    pub catch_up_timeout: Duration,
}

pub async fn quality(ctx: &Ctx, o: Opts) -> Result<()> {
    let seed = ctx.common.seed;
    let docs = corpus(seed, o.entities);
    let queries = queries(seed, &docs);
    eprintln!("{}", describe(&queries));
    let (opts, _tmp) = opts_with_data_dir(ctx)?;
    let model = match &o.model_dir {
        Some(from) => {
            let data_dir = opts.data_dir.as_deref().expect("a data dir");
            std::fs::create_dir_all(data_dir)?;
            let how = install_model(&opts, data_dir, from)?;
            eprintln!("model from {}: {how}", from.display());
            Some(how)
        }
        None => None,
    };
    let d = start_daemon(&opts)?;
    setup_project(&d.addr, &d.key).await?;
    let ops = docs
        .iter()
        .chain([&sentinel()])
        .map(create_op)
        .collect::<Vec<_>>();
    ctx.load(&d, "quality corpus", ops.len(), ops.into_iter())
        .await?;
    ctx.settle_after_load().await?;
    let (waited, account) = wait_caught_up(&d, o.catch_up_timeout).await?;
    eprintln!("derived indexes caught up {waited:.1?} after loading: {account}");
    let mut c = Conn::open(&d.addr, &d.key).await?;
    let mut outcomes = Vec::new();
    for mode in ["text", "semantic", "hybrid"] {
        outcomes.push((mode, run_mode(&mut c, mode, &queries).await?));
    }
    print_table(&outcomes);
    println!("{STEM_NOTE}");
    let record = result_json(ctx, &o, &queries, &outcomes, model);
    if let Some(path) = &o.out {
        std::fs::write(path, serde_json::to_string_pretty(&record)?)?;
    }
    ctx.report("quality", &[], record)
}

fn start_daemon(opts: &DaemonOpts) -> Result<Daemon> {
    let mut d = Daemon::spawn(opts)?;
    d.wait_ready(Duration::from_millis(5), Duration::from_secs(120))?;
    eprintln!(
        "strata pid {} on {} (data {})",
        d.pid(),
        d.addr,
        d.data_dir.display()
    );
    Ok(d)
}

fn kind_counts(queries: &[Query]) -> BTreeMap<Kind, (usize, f64)> {
    let mut out: BTreeMap<Kind, (usize, f64)> = BTreeMap::new();
    for q in queries {
        let e = out.entry(q.kind).or_default();
        e.0 += 1;
        e.1 += q.coverage;
    }
    out
}

fn describe(queries: &[Query]) -> String {
    let parts: Vec<String> = kind_counts(queries)
        .iter()
        .map(|(k, (n, cov))| format!("{} {n} (coverage {:.2})", k.name(), cov / *n as f64))
        .collect();
    format!("{} labelled queries: {}", queries.len(), parts.join(", "))
}

fn print_table(outcomes: &[(&str, Outcome)]) {
    let mut header = format!("{:<9}{:>16}", "mode", "all");
    for k in KINDS {
        header.push_str(&format!("{:>16}", k.name()));
    }
    println!("recall@10 / MRR\n{header}");
    for (mode, outcome) in outcomes {
        match outcome {
            Outcome::NotServed(501, msg) => println!("{mode:<9}not served (501: {msg})"),
            Outcome::NotServed(status, msg) => println!("{mode:<9}failed ({status}: {msg})"),
            Outcome::Served {
                overall, by_kind, ..
            } => {
                let mut line = format!("{mode:<9}{:>16}", overall.cell());
                for k in KINDS {
                    let cell = by_kind.get(&k).map(Score::cell).unwrap_or_default();
                    line.push_str(&format!("{cell:>16}"));
                }
                println!("{line}");
            }
        }
    }
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::NotServed(status, msg) => {
            json!({"served": false, "status": status, "message": msg})
        }
        Outcome::Served {
            overall,
            by_kind,
            p50_ms,
        } => json!({
            "served": true,
            "overall": overall.json(),
            "by_kind": by_kind.iter().map(|(k, s)| (k.name(), s.json())).collect::<BTreeMap<_, _>>(),
            "p50_ms": p50_ms,
        }),
    }
}

fn result_json(
    ctx: &Ctx,
    o: &Opts,
    queries: &[Query],
    outcomes: &[(&str, Outcome)],
    model: Option<&str>,
) -> Value {
    let kinds: BTreeMap<&str, Value> = kind_counts(queries)
        .iter()
        .map(|(k, (n, cov))| (k.name(), json!({"queries": n, "coverage": cov / *n as f64})))
        .collect();
    json!({
        "entities": o.entities,
        "seed": ctx.common.seed,
        "backend": if ctx.common.postgres.is_some() { "postgres" } else { "sqlite" },
        "model": model,
        "concepts": CONCEPTS.len(),
        "queries": kinds,
        "modes": outcomes.iter().map(|(m, out)| (*m, outcome_json(out))).collect::<BTreeMap<_, _>>(),
        "note": STEM_NOTE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a stemmer may leave of `w`, conservatively short.
    fn root(w: &str) -> &str {
        match w.len() {
            0..=4 => w,
            5..=6 => &w[..w.len() - 1],
            _ => &w[..w.len() - 3],
        }
    }

    #[test]
    fn forms_do_not_prefix_other_words() {
        let sentinel = words(&format!("{SENTINEL_TITLE} {}", sentinel().body));
        let mut clashes = Vec::new();
        for (k, c) in CONCEPTS.iter().enumerate() {
            let others = CONCEPTS
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != k)
                .flat_map(|(_, o)| o.forms.iter().copied())
                .chain(FILLER_ADJ.iter().copied())
                .chain(FILLER_NOUN.iter().copied())
                .chain(FILLER_LINK.iter().copied())
                .chain(sentinel.iter().map(String::as_str));
            for other in others {
                for form in c.forms.iter().chain(c.inflected.iter()) {
                    if other.starts_with(root(form)) {
                        clashes.push(format!("{other} ~ {form}"));
                    }
                }
            }
        }
        assert!(clashes.is_empty(), "{clashes:?}");
    }

    #[test]
    fn labels_are_deterministic_and_plentiful() {
        let docs = corpus(42, 3000);
        let qs = queries(42, &docs);
        assert!(qs.len() >= 200, "{}", describe(&qs));
        let again = queries(42, &corpus(42, 3000));
        assert!(qs.iter().zip(&again).all(|(a, b)| a.text == b.text));
        for k in KINDS {
            assert!(qs.iter().any(|q| q.kind == k), "no {} query", k.name());
        }
        let synonyms: Vec<&Query> = qs.iter().filter(|q| q.kind == Kind::Synonym).collect();
        let coverage = synonyms.iter().map(|q| q.coverage).sum::<f64>() / synonyms.len() as f64;
        assert!(
            coverage < 0.1,
            "synonyms in {coverage:.2} of the relevant texts"
        );
    }

    #[test]
    fn typos_are_one_interior_edit() {
        let mut r = crate::gen::rng(1, 2);
        let vocab = vocabulary();
        for _ in 0..100 {
            let t = typo("automobile", &mut r, &vocab);
            assert_ne!(t, "automobile");
            assert!(t.starts_with('a') && t.ends_with('e'));
            assert!(t.len().abs_diff(10) <= 1);
        }
    }

    #[test]
    fn a_consumer_is_done_without_lag_past_the_head() {
        let at = |position: i64, lag: f64| json!({"position": position, "lag_seconds": lag});
        assert!(consumer_done(&at(10, 0.0), Some(10)));
        assert!(consumer_done(&at(3, 0.0), None));
        assert!(!consumer_done(&at(9, 0.0), Some(10)));
        assert!(!consumer_done(&at(12, 0.4), Some(10)));
    }

    #[test]
    fn scores() {
        let rel: HashSet<String> = ["a", "b"].map(String::from).into();
        let ranked = ["x", "b", "y"].map(String::from);
        assert_eq!(recall_at_10(&rel, &ranked), 0.5);
        assert_eq!(reciprocal_rank(&rel, &ranked), 0.5);
        assert_eq!(reciprocal_rank(&rel, &[]), 0.0);
    }
}
