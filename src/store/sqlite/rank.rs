//! `strata_bm25(entity_fts, docs, hits_1, ..., hits_k)`: FTS5's BM25 with
//! the document counts the caller gives instead of the index's. The index
//! holds every tenant, so FTS5's own `bm25()` weighs a word by how many
//! rows of *any* project hold it, and the score it returns would tell one
//! tenant how many documents of others hold a word. Given the project's
//! live documents (`docs`) and, for each phrase of the query in order, how
//! many of them match it (`hits_i`), the score depends on the project's
//! rows alone; only the mean row length stays index-wide, as in the text
//! index (`search/text_index/stats.rs`). Otherwise the formula is FTS5's
//! (k1 = 1.2, b = 0.75, the same negative sign: ascending is best first).

use rusqlite::{ffi, Connection};
use std::os::raw::{c_int, c_void};
use std::ptr::null_mut;

const K1: f64 = 1.2;
const B: f64 = 0.75;
/// The indexed text's column (`scope` is column 0).
const BODY: c_int = 1;

/// Adds `strata_bm25` to the FTS5 module of `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let api = fts5_api(conn)?;
    // SAFETY: `api` is the connection's live fts5_api (checked non-null);
    // the name is a C string literal; no user data, so nothing to destroy.
    let rc = unsafe {
        let create = (*api)
            .xCreateFunction
            .ok_or_else(|| misuse("no xCreateFunction"))?;
        create(
            api,
            c"strata_bm25".as_ptr(),
            null_mut(),
            Some(strata_bm25),
            None,
        )
    };
    check(rc)
}

/// The connection's fts5_api, handed out through a pointer bound to
/// `SELECT fts5(?1)` (sqlite.org/fts5.html, "Extending FTS5").
fn fts5_api(conn: &Connection) -> rusqlite::Result<*mut ffi::fts5_api> {
    let mut api: *mut ffi::fts5_api = null_mut();
    // SAFETY: the statement is prepared, bound, stepped and finalized on
    // this connection's handle while `conn` is borrowed; the bound pointer
    // is to `api`, which outlives the statement.
    unsafe {
        let db = conn.handle();
        let mut stmt = null_mut();
        check(ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            null_mut(),
        ))?;
        let bound = ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast::<c_void>(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        let stepped = ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
        check(bound)?;
        if stepped != ffi::SQLITE_ROW {
            check(stepped)?;
        }
    }
    if api.is_null() {
        return Err(misuse("this SQLite has no FTS5"));
    }
    Ok(api)
}

fn check(rc: c_int) -> rusqlite::Result<()> {
    match rc {
        ffi::SQLITE_OK | ffi::SQLITE_DONE | ffi::SQLITE_ROW => Ok(()),
        rc => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
    }
}

fn misuse(why: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_MISUSE), Some(why.to_owned()))
}

/// BM25 of one phrase: `hits` of `docs` documents match it; it occurs
/// `tf` times in a row of `length` tokens, where rows average `mean`.
fn phrase_score(docs: f64, hits: f64, tf: f64, length: f64, mean: f64) -> f64 {
    // The counts are read a moment before the search, so a write between
    // can leave more hits than documents: NaN, which this also floors.
    let idf = ((docs - hits + 0.5) / (hits + 0.5)).ln();
    let idf = if idf > 0.0 { idf } else { 1e-6 };
    idf * (tf * (K1 + 1.0)) / (tf + K1 * (1.0 - B + B * length / mean))
}

unsafe extern "C" fn strata_bm25(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    n: c_int,
    args: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: FTS5 calls this with its API, the row's context and the
    // `n` arguments after the table's.
    match unsafe { score(api, fts, n, args) } {
        Ok(s) => unsafe { ffi::sqlite3_result_double(ctx, -s) },
        Err(rc) => unsafe { ffi::sqlite3_result_error_code(ctx, rc) },
    }
}

/// Calls one of the API's functions, turning a missing one or an error
/// code into `Err`.
macro_rules! call {
    ($api:expr, $f:ident ( $($arg:expr),* )) => {{
        let f = (*$api).$f.ok_or(ffi::SQLITE_MISUSE)?;
        match f($($arg),*) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    }};
}

unsafe fn score(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    n: c_int,
    args: *mut *mut ffi::sqlite3_value,
) -> Result<f64, c_int> {
    let phrases = (*api).xPhraseCount.ok_or(ffi::SQLITE_MISUSE)?(fts);
    if phrases < 0 || n != phrases + 1 {
        return Err(ffi::SQLITE_MISUSE);
    }
    let arg = |i: c_int| ffi::sqlite3_value_double(*args.add(i as usize));
    let docs = arg(0);

    let (mut rows, mut tokens, mut length) = (0i64, 0i64, 0 as c_int);
    call!(api, xRowCount(fts, &mut rows))?;
    call!(api, xColumnTotalSize(fts, -1, &mut tokens))?;
    call!(api, xColumnSize(fts, -1, &mut length))?;
    let mean = if rows > 0 {
        tokens as f64 / rows as f64
    } else {
        1.0
    };

    let mut tf = vec![0.0f64; phrases as usize];
    let mut instances = 0;
    call!(api, xInstCount(fts, &mut instances))?;
    for i in 0..instances {
        let (mut phrase, mut column, mut offset) = (0, 0, 0);
        call!(api, xInst(fts, i, &mut phrase, &mut column, &mut offset))?;
        if column == BODY {
            if let Some(count) = tf.get_mut(phrase as usize) {
                *count += 1.0;
            }
        }
    }
    Ok(tf
        .iter()
        .enumerate()
        .map(|(i, &tf)| phrase_score(docs, arg(i as c_int + 1), tf, length as f64, mean))
        .sum())
}

#[cfg(test)]
mod tests {
    /// FTS5's floor for a word most documents hold, also when the counts
    /// disagree (more hits than documents) or are empty.
    #[test]
    fn idf_is_floored_never_nan() {
        for (docs, hits) in [(10.0, 9.0), (3.0, 5.0), (0.0, 1.0), (0.0, 0.0)] {
            let s = super::phrase_score(docs, hits, 1.0, 3.0, 3.0);
            assert!(s.is_finite() && s > 0.0, "{docs} {hits}: {s}");
        }
        assert!(super::phrase_score(100.0, 1.0, 1.0, 3.0, 3.0) > 1.0);
    }
}
