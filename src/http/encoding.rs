//! Content negotiation and large bodies, shared by every route of both listeners: whether a
//! client takes gzip ([`accepts_gzip`], one reading of `Accept-Encoding` for `/metrics`, the
//! kept list replies and the console's files), how a reply is kept ([`encode_json`]: small
//! ones plain, large ones only gzipped) and how a large shared body is sent ([`in_pieces`],
//! [`inflated`]).

use std::convert::Infallible;
use std::io::{Read, Write};

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;
use flate2::write::GzEncoder;

/// How much of a kept reply one connection takes at a time. 32 clients of the 15 MB
/// container list: 64 KiB gave p50 200 ms, 256 KiB 126 ms (a bare server writing the same
/// bytes: 92 ms), for at most 8 MiB of copies across them.
pub const PIECE_BYTES: usize = 256 * 1024;

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): listed with a non-zero quality,
/// or not listed and `*` allowed. An explicit `gzip;q=0` refuses it even when `*` is
/// allowed; an unparsable quality refuses the coding it qualifies.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok());
            let accepted = quality.is_some_and(|q| q > 0.0 && q <= 1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(accepted),
                "*" => any = Some(accepted),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// A reply body as slices of the same shared bytes, pulled as the socket drains. Given one
/// `Bytes`, actix-http copies all of it into the connection's write buffer at once: 32 clients
/// of the 15 MB container list held about 490 MB of copies (peak RSS 829 MiB at 10,000 GPUs).
/// A stream is read only while that buffer is nearly empty.
pub fn in_pieces(
    bytes: Bytes,
) -> SizedStream<impl futures::Stream<Item = Result<Bytes, Infallible>>> {
    let size = bytes.len() as u64;
    SizedStream::new(size, futures::stream::iter(pieces(bytes).map(Ok)))
}

/// `bytes` as slices of at most [`PIECE_BYTES`], sharing its buffer.
pub fn pieces(bytes: Bytes) -> impl Iterator<Item = Bytes> {
    let size = bytes.len();
    (0..size)
        .step_by(PIECE_BYTES)
        .map(move |start| bytes.slice(start..(start + PIECE_BYTES).min(size)))
}

/// How much plain text one connection of a client that does not take gzip inflates at a
/// time. Each such connection holds a piece and actix-http's copy of it: with
/// [`PIECE_BYTES`], 32 plain clients of a large list could hold 16 MB of them (32 × 2 ×
/// 256 KiB). These clients (scripts, not the console) pay in throughput instead.
const INFLATE_PIECE_BYTES: usize = 64 * 1024;

/// Replies shorter than this are kept plain: compressing them saves less than it costs.
pub const MIN_GZIP_BYTES: usize = 1024;

/// The compression of kept replies. A reply is built once, in the background, and sent to
/// every client that asks until the next build, so bytes saved count once per client: at
/// 10,000 GPUs the container list (37 MB of JSON) is 6.1 MB at the fast level and 3.8 MB at
/// zlib's default, for about 0.3 s more of the build thread's (nice +10) CPU.
pub(crate) const REPLY_LEVEL: flate2::Compression = flate2::Compression::new(6);

/// A serialized reply as it is kept: only one encoding of it.
#[derive(Debug, Clone)]
pub enum EncodedBody {
    /// Under [`MIN_GZIP_BYTES`].
    Plain(Bytes),
    /// Larger: gzipped as it was serialized; the plain text never existed whole.
    Gzip { packed: Bytes, plain_len: usize },
}

impl EncodedBody {
    /// Bytes held.
    pub fn size(&self) -> usize {
        match self {
            EncodedBody::Plain(bytes) => bytes.len(),
            EncodedBody::Gzip { packed, .. } => packed.len(),
        }
    }
}

/// `value` as JSON, kept as [`EncodedBody`]. At 10,000 GPUs of real-sized pods the container
/// list is 37 MB of JSON and 6 MB gzipped; serialized straight into the compressor, the 37 MB
/// (and the doubling buffer that held it) are never allocated, and one encoding is kept.
pub fn encode_json<T: serde::Serialize>(value: &T) -> serde_json::Result<EncodedBody> {
    let mut sink = Sink::Plain(Vec::new());
    serde_json::to_writer(&mut sink, value)?;
    Ok(match sink {
        Sink::Plain(plain) => EncodedBody::Plain(Bytes::from(plain)),
        Sink::Gzip { encoder, plain_len } => {
            let mut packed = encoder.finish().map_err(serde_json::Error::io)?;
            // The buffer doubled as it grew; kept for as long as the reply is served.
            packed.shrink_to_fit();
            EncodedBody::Gzip {
                packed: Bytes::from(packed),
                plain_len,
            }
        }
    })
}

/// Where [`encode_json`] writes: a plain buffer until it reaches [`MIN_GZIP_BYTES`], then
/// the compressor.
enum Sink {
    Plain(Vec<u8>),
    Gzip {
        encoder: Box<GzEncoder<Vec<u8>>>,
        plain_len: usize,
    },
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(plain) => {
                plain.extend_from_slice(data);
                if plain.len() >= MIN_GZIP_BYTES {
                    let mut encoder = Box::new(GzEncoder::new(Vec::new(), REPLY_LEVEL));
                    encoder.write_all(plain)?;
                    let plain_len = plain.len();
                    *self = Sink::Gzip { encoder, plain_len };
                }
            }
            Sink::Gzip { encoder, plain_len } => {
                encoder.write_all(data)?;
                *plain_len += data.len();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plain text of a gzipped kept reply, for a client that does not take gzip: inflated
/// [`INFLATE_PIECE_BYTES`] at a time as the socket drains, so no whole plain copy is made.
pub fn inflated(
    packed: Bytes,
    plain_len: usize,
) -> SizedStream<impl futures::Stream<Item = Result<Bytes, std::io::Error>>> {
    let decoder = flate2::read::GzDecoder::new(std::io::Cursor::new(packed));
    let pieces = futures::stream::unfold(Some(decoder), |decoder| async move {
        let mut decoder = decoder?;
        let mut piece = vec![0; INFLATE_PIECE_BYTES];
        let mut filled = 0;
        while filled < INFLATE_PIECE_BYTES {
            match decoder.read(&mut piece[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) => return Some((Err(error), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        piece.truncate(filled);
        Some((Ok(Bytes::from(piece)), Some(decoder)))
    });
    SizedStream::new(plain_len as u64, pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn accept_encoding_qualities() {
        for (value, want) in [
            ("gzip", true),
            ("x-gzip", true),
            ("GZIP", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("br, gzip;q=0.5", true),
            ("gzip; q=0.001", true),
            ("*", true),
            ("*;q=0.1", true),
            ("identity", false),
            ("br", false),
            ("", false),
            ("gzip;q=0", false),
            ("gzip;q=0.000", false),
            ("gzip;Q=0", false),
            ("gzip;q=abc", false),
            ("gzip;q=2", false),
            // An explicit refusal of gzip wins over the wildcard, in either order.
            ("gzip;q=0, *", false),
            ("*, gzip;q=0", false),
            // The wildcard refused, gzip named: gzip.
            ("gzip;q=0.5, *;q=0", true),
            ("*;q=0", false),
            ("identity;q=0", false),
        ] {
            assert_eq!(accepts(&[value]), want, "{value:?}");
        }
        assert!(!accepts(&[]));
        // Several header lines are one list.
        assert!(accepts(&["br", "gzip"]));
        assert!(!accepts(&["*", "gzip;q=0"]));
    }

    #[actix_rt::test]
    async fn large_replies_are_kept_gzipped_and_inflated_for_plain_clients() {
        let small = encode_json(&serde_json::json!({"list": [1, 2, 3]})).unwrap();
        assert!(matches!(&small, EncodedBody::Plain(b) if b == "{\"list\":[1,2,3]}"));

        let items: Vec<String> = (0..200_000).map(|i| format!("container-{i}")).collect();
        let text = serde_json::to_vec(&serde_json::json!({ "items": items })).unwrap();
        let EncodedBody::Gzip { packed, plain_len } =
            encode_json(&serde_json::json!({ "items": items })).unwrap()
        else {
            panic!("a large reply is kept gzipped");
        };
        assert_eq!(plain_len, text.len());
        assert!(packed.len() < text.len() / 4);
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, text);
        // Inflated for a plain client: the same text.
        let sent = actix_web::body::to_bytes(inflated(packed.clone(), plain_len))
            .await
            .unwrap();
        assert_eq!(sent, text);
        let truncated = packed.slice(..packed.len() / 2);
        assert!(actix_web::body::to_bytes(inflated(truncated, plain_len))
            .await
            .is_err());
    }

    #[actix_rt::test]
    async fn pieces_are_slices_that_add_up_to_the_body() {
        let size = 3 * PIECE_BYTES + 1234;
        let body = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
        let pieces: Vec<Bytes> = pieces(body.clone()).collect();
        assert_eq!(pieces.len(), 4);
        assert!(pieces
            .iter()
            .all(|p| p.len() <= PIECE_BYTES && !p.is_empty()));
        // Slices of the one buffer, not copies.
        assert_eq!(pieces[1].as_ptr(), body[PIECE_BYTES..].as_ptr());
        assert_eq!(super::pieces(Bytes::new()).count(), 0);
        let sent = actix_web::body::to_bytes(in_pieces(body.clone()))
            .await
            .unwrap();
        assert_eq!(sent, body);
    }
}
