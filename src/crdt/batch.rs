//! The binary batch a gateway posts (`POST P/doc-updates`): updates for
//! several documents in one body, each a frame of lib0 encoding, which
//! every Yjs stack already has: `varString(doc) varUint8Array(update)`.
//! Frames of one document keep their order. Untrusted: every length is
//! checked against what is left before anything is allocated, and the
//! frame count and each update's size are bounded.

/// Most frames in one batch.
pub const MAX_FRAMES: usize = 10_000;

/// The updates of one document, in the order they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocUpdates {
    pub doc: String,
    pub updates: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is empty")]
    Empty,
    #[error("frame {0}: the body ends inside it")]
    Truncated(usize),
    #[error("frame {0}: a length does not fit in 32 bits")]
    Overlong(usize),
    #[error("frame {0}: the document id is not UTF-8")]
    NotUtf8(usize),
    #[error("frame {frame}: the update is {size} bytes, over the limit of {limit}")]
    TooLarge {
        frame: usize,
        size: usize,
        limit: usize,
    },
    #[error("more than {MAX_FRAMES} frames")]
    TooManyFrames,
}

/// Reads lib0 varints and byte strings off untrusted bytes.
struct Reader<'a> {
    rest: &'a [u8],
    frame: usize,
}

impl<'a> Reader<'a> {
    fn var_uint(&mut self) -> Result<usize, BatchError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let (&byte, rest) = self
                .rest
                .split_first()
                .ok_or(BatchError::Truncated(self.frame))?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value)
                    .map(|v| v as usize)
                    .map_err(|_| BatchError::Overlong(self.frame));
            }
        }
        Err(BatchError::Overlong(self.frame))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BatchError> {
        let len = self.var_uint()?;
        if len > self.rest.len() {
            return Err(BatchError::Truncated(self.frame));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }
}

/// The batch's documents, in the order each first appears, each with its
/// updates; an update over `max_update` bytes refuses the whole batch.
pub fn decode(body: &[u8], max_update: usize) -> Result<Vec<DocUpdates>, BatchError> {
    let mut reader = Reader {
        rest: body,
        frame: 0,
    };
    let mut docs: Vec<DocUpdates> = Vec::new();
    let mut index = std::collections::HashMap::new();
    while !reader.rest.is_empty() {
        if reader.frame == MAX_FRAMES {
            return Err(BatchError::TooManyFrames);
        }
        let frame = reader.frame;
        let doc = std::str::from_utf8(reader.bytes()?).map_err(|_| BatchError::NotUtf8(frame))?;
        let update = reader.bytes()?;
        if update.len() > max_update {
            return Err(BatchError::TooLarge {
                frame,
                size: update.len(),
                limit: max_update,
            });
        }
        let at = *index.entry(doc.to_owned()).or_insert_with(|| {
            docs.push(DocUpdates {
                doc: doc.to_owned(),
                updates: Vec::new(),
            });
            docs.len() - 1
        });
        docs[at].updates.push(update.to_vec());
        reader.frame += 1;
    }
    if docs.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(docs)
}

/// Encodes frames as `decode` reads them (for gateways, tests and the
/// benchmark).
pub fn encode<'a>(frames: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (doc, update) in frames {
        for bytes in [doc.as_bytes(), update] {
            let mut len = bytes.len();
            while len >= 0x80 {
                out.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_group_by_document_in_order() {
        let big = vec![7u8; 300];
        let body = encode([("a", &[1u8, 2][..]), ("b", &big[..]), ("a", &[3u8][..])]);
        let docs = decode(&body, 1000).unwrap();
        assert_eq!(
            docs,
            vec![
                DocUpdates {
                    doc: "a".into(),
                    updates: vec![vec![1, 2], vec![3]]
                },
                DocUpdates {
                    doc: "b".into(),
                    updates: vec![big.clone()]
                },
            ]
        );
    }

    #[test]
    fn bad_bodies_are_refused_without_allocating_what_they_claim() {
        assert_eq!(decode(&[], 10), Err(BatchError::Empty));
        // A document id claiming 4 GiB, with four bytes behind it.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3, 4], 10),
            Err(BatchError::Truncated(0))
        );
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 10),
            Err(BatchError::Overlong(0))
        );
        let body = encode([("a", &[1u8][..])]);
        assert_eq!(
            decode(&body[..body.len() - 1], 10),
            Err(BatchError::Truncated(0))
        );
        assert_eq!(
            decode(&encode([("\u{e9}", &[1u8][..])])[..], 10).unwrap()[0].doc,
            "é"
        );
        assert_eq!(decode(&[1, 0xff, 0], 10), Err(BatchError::NotUtf8(0)));
        let big = encode([("a", &[1u8][..]), ("a", &[0u8; 11][..])]);
        assert_eq!(
            decode(&big, 10),
            Err(BatchError::TooLarge {
                frame: 1,
                size: 11,
                limit: 10
            })
        );
        let many: Vec<u8> = (0..=MAX_FRAMES).flat_map(|_| [1, b'a', 0]).collect();
        assert_eq!(decode(&many, 10), Err(BatchError::TooManyFrames));
    }
}
