//! Encryption at rest of backup chunks, when a backup key is configured
//! (`STRATA_BACKUP_KEY`, 64 hex characters): ChaCha20-Poly1305. A sealed
//! chunk is a fresh random 12-byte nonce followed by the ciphertext and its
//! tag, with the chunk's blob key as associated data, so a chunk moved to
//! another place or backup does not open. The manifest stays readable and
//! names the key by its fingerprint, so a restore with the wrong key says
//! so before reading a chunk, and carries a tag made with the key
//! (`tag`), so a manifest changed by someone without it is refused.

use anyhow::{anyhow, ensure};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

const NONCE: usize = 12;

pub struct ChunkKey {
    cipher: ChaCha20Poly1305,
    /// The key's fingerprint: the first 16 hex characters of the SHA-256 of
    /// its bytes (names the key without revealing it).
    pub id: String,
}

impl ChunkKey {
    /// A key from its 64 hex characters (`openssl rand -hex 32`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                anyhow!("STRATA_BACKUP_KEY must be 64 hex characters (32 bytes; `openssl rand -hex 32` makes one)")
            })?;
        Ok(ChunkKey {
            cipher: ChaCha20Poly1305::new_from_slice(&bytes).expect("32 bytes"),
            id: crate::digest::sha256_hex(&bytes)[..16].to_owned(),
        })
    }

    pub fn seal(&self, place: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let payload = Payload {
            msg: plain,
            aad: place.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("encryption of a bounded chunk cannot fail");
        [&nonce[..], &sealed].concat()
    }

    /// A tag that only a holder of the key can make for `message` at
    /// `place`: a fresh nonce and the AEAD's tag over nothing, with the
    /// place and message as associated data (hex).
    pub fn tag(&self, place: &str, message: &[u8]) -> String {
        let nonce: [u8; NONCE] = rand::random();
        let aad = tag_aad(place, message);
        let payload = Payload {
            msg: &[],
            aad: &aad,
        };
        let tag = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("an empty message cannot fail");
        hex::encode([&nonce[..], &tag].concat())
    }

    /// Whether `tag` is one `tag` made for `message` at `place` with this key.
    pub fn verify_tag(&self, place: &str, message: &[u8], tag: &str) -> bool {
        let Some(bytes) = hex::decode(tag).ok().filter(|b| b.len() > NONCE) else {
            return false;
        };
        let (nonce, tag) = bytes.split_at(NONCE);
        let aad = tag_aad(place, message);
        let payload = Payload {
            msg: tag,
            aad: &aad,
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .is_ok_and(|plain| plain.is_empty())
    }

    pub fn open(&self, place: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        ensure!(
            sealed.len() > NONCE,
            "{place} is too short to be a sealed chunk"
        );
        let (nonce, body) = sealed.split_at(NONCE);
        let payload = Payload {
            msg: body,
            aad: place.as_bytes(),
        };
        self.cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| anyhow!("{place} does not open with the backup key"))
    }
}

/// What a tag authenticates: the place, a NUL (no key holds one), the message.
fn tag_aad(place: &str, message: &[u8]) -> Vec<u8> {
    [place.as_bytes(), &[0], message].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_sealed_chunk_opens_only_with_its_key_at_its_place() {
        let key = ChunkKey::parse(KEY).unwrap();
        let sealed = key.seal("backups/a/chunk-00000", b"secret lines");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            key.open("backups/a/chunk-00000", &sealed).unwrap(),
            b"secret lines"
        );
        assert!(key.open("backups/b/chunk-00000", &sealed).is_err(), "moved");
        let other = ChunkKey::parse(&KEY.replace("00", "ff")).unwrap();
        assert_ne!(other.id, key.id);
        assert!(other.open("backups/a/chunk-00000", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(key.open("backups/a/chunk-00000", &flipped).is_err());
        for bad in [
            "",
            "00",
            &KEY[..62],
            &format!("{KEY}00"),
            &KEY.replace('0', "g"),
        ] {
            assert!(ChunkKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
