//! Content negotiation and large bodies, shared by every route of both listeners: whether a
//! client takes gzip ([`accepts_gzip`], one reading of `Accept-Encoding` for `/metrics`, the
//! kept list replies and the console's files), and how a large shared body is sent
//! ([`in_pieces`]).

use std::convert::Infallible;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use bytes::Bytes;

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
