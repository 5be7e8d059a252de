//! SHA-256 digests as lowercase hex: blob integrity, migration checksums,
//! API key hashes and snapshot names all use this one form.

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
