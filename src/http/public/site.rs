//! The console's files, loaded whole into memory once at start: [`StaticSite`].
//!
//! The built HAMi-WebUI frontend is a few megabytes, so reading it once and answering from
//! memory is both the fastest and the safest way to serve it: each file's gzip form and
//! validator are computed here, once, not per request, and a request can only ever name a
//! file that was found by walking the directory — there is no file-system access at request
//! time that a crafted path could steer. The walk is bounded in depth, file count and bytes.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::base_path;

/// Upper bound on the bytes of all files together; the real frontend is under 10 MiB.
pub const MAX_SITE_BYTES: u64 = 64 << 20;
/// Upper bound on the number of files.
pub const MAX_FILES: usize = 20_000;
/// Directories nested deeper than this are not walked.
pub const MAX_DEPTH: usize = 32;
/// Files smaller than this are never compressed: the gzip header would eat the gain.
const MIN_GZIP_BYTES: usize = 256;

/// Why the static directory cannot be served. Each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory has no `index.html`, the page every history-mode route answers with.
    #[error("{0}: no index.html (not a built HAMi-WebUI frontend?)")]
    NoIndex(PathBuf),
    /// `index.html` is not UTF-8 or its base marker cannot be rewritten.
    #[error("{path}: {reason}")]
    Index { path: PathBuf, reason: String },
    /// More bytes or files than the limits allow.
    #[error("{path}: larger than the limit of {limit} (bytes or files) for the static directory")]
    TooLarge { path: PathBuf, limit: u64 },
    /// Compressing a file failed (writing to memory; not expected).
    #[error("cannot compress {path}: {source}")]
    Compress {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long a browser may keep a file without asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// The name carries a content hash: a new build has new names, so keep it for a year.
    Immutable,
    /// Same name across builds (`index.html`, `favicon.svg`): revalidate every time.
    Revalidate,
}

impl CachePolicy {
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Immutable => "public, max-age=31536000, immutable",
            Self::Revalidate => "no-cache",
        }
    }
}

/// One file, ready to send.
#[derive(Debug, Clone)]
pub struct Asset {
    pub body: Bytes,
    /// The gzip form, when the type compresses and compression saved at least a tenth.
    pub gzip: Option<Bytes>,
    pub content_type: &'static str,
    pub cache: CachePolicy,
    /// Strong validator of `body`; the gzip form's is this with `-gz` appended, because the
    /// two representations differ byte for byte.
    pub etag: String,
    pub gzip_etag: String,
}

impl Asset {
    fn new(path: &str, body: Vec<u8>, cache: CachePolicy) -> Result<Self, SiteError> {
        let content_type = content_type(path);
        let gzip = if compressible(content_type) && body.len() >= MIN_GZIP_BYTES {
            let packed = gzip(&body).map_err(|source| SiteError::Compress {
                path: path.to_string(),
                source,
            })?;
            (packed.len() * 10 < body.len() * 9).then(|| Bytes::from(packed))
        } else {
            None
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        hasher.write(&body);
        let tag = format!("{:016x}-{:x}", hasher.finish(), body.len());
        Ok(Self {
            body: Bytes::from(body),
            gzip,
            content_type,
            cache,
            etag: format!("\"{tag}\""),
            gzip_etag: format!("\"{tag}-gz\""),
        })
    }
}

/// The whole console: every file by its `/`-separated path relative to the static
/// directory, the directories (so a missing `static/js/x.js` is a 404, not the page), and
/// `index.html` with its base marker rewritten.
#[derive(Debug)]
pub struct StaticSite {
    files: HashMap<String, Asset>,
    dirs: HashSet<String>,
    index: Asset,
    /// Bytes of all files as read, and of their gzip forms, for the start-up log line.
    pub total_bytes: u64,
    pub gzip_bytes: u64,
}

impl StaticSite {
    /// Reads `dir` whole. `base_path` must already be normalized.
    pub fn load(dir: &Path, base_path: &str) -> Result<Self, SiteError> {
        let root = dir.canonicalize().map_err(|source| SiteError::Unreadable {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut files = HashMap::new();
        let mut dirs = HashSet::new();
        let mut total_bytes = 0u64;
        let mut pending: Vec<(PathBuf, String, usize)> = vec![(root.clone(), String::new(), 0)];
        while let Some((path, key, depth)) = pending.pop() {
            let unreadable = |source| SiteError::Unreadable {
                path: path.clone(),
                source,
            };
            for entry in std::fs::read_dir(&path).map_err(unreadable)? {
                let entry = entry.map_err(unreadable)?;
                // Names that are not UTF-8 cannot be asked for; dot files (`.git`,
                // Kubernetes' `..data` volume links) are never part of the build.
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with('.') || name.contains('\\') {
                    continue;
                }
                let child = entry.path();
                let child_key = if key.is_empty() {
                    name
                } else {
                    format!("{key}/{name}")
                };
                // Follow links only to places inside the directory.
                let Ok(real) = child.canonicalize() else {
                    continue;
                };
                if !real.starts_with(&root) {
                    tracing::warn!(file = %child.display(), "static dir: skipping a link that leaves the directory");
                    continue;
                }
                let meta = std::fs::metadata(&real).map_err(|source| SiteError::Unreadable {
                    path: child.clone(),
                    source,
                })?;
                if meta.is_dir() {
                    if depth < MAX_DEPTH {
                        dirs.insert(child_key.clone());
                        pending.push((real, child_key, depth + 1));
                    }
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                total_bytes += meta.len();
                if total_bytes > MAX_SITE_BYTES {
                    return Err(SiteError::TooLarge {
                        path: dir.to_path_buf(),
                        limit: MAX_SITE_BYTES,
                    });
                }
                if files.len() >= MAX_FILES {
                    return Err(SiteError::TooLarge {
                        path: dir.to_path_buf(),
                        limit: MAX_FILES as u64,
                    });
                }
                let body = std::fs::read(&real).map_err(|source| SiteError::Unreadable {
                    path: child.clone(),
                    source,
                })?;
                let cache = if is_hashed_asset(&child_key) {
                    CachePolicy::Immutable
                } else {
                    CachePolicy::Revalidate
                };
                let asset = Asset::new(&child_key, body, cache)?;
                files.insert(child_key, asset);
            }
        }
        let index_path = root.join("index.html");
        let Some(built) = files.remove("index.html") else {
            return Err(SiteError::NoIndex(dir.to_path_buf()));
        };
        let index_error = |reason: String| SiteError::Index {
            path: index_path.clone(),
            reason,
        };
        let html =
            std::str::from_utf8(&built.body).map_err(|_| index_error("not UTF-8".to_string()))?;
        let html = base_path::rewrite_index(html, base_path).map_err(index_error)?;
        let index = Asset::new("index.html", html.into_bytes(), CachePolicy::Revalidate)?;
        let gzip_bytes = files
            .values()
            .chain(std::iter::once(&index))
            .map(|a| a.gzip.as_ref().map_or(0, |g| g.len() as u64))
            .sum();
        Ok(Self {
            files,
            dirs,
            index,
            total_bytes,
            gzip_bytes,
        })
    }

    /// The console page, answered for `/`, `/index.html` and every history-mode route.
    pub fn index(&self) -> &Asset {
        &self.index
    }

    /// The file at `key` (relative, `/`-separated), other than `index.html`.
    pub fn file(&self, key: &str) -> Option<&Asset> {
        self.files.get(key)
    }

    /// Whether `key` is a directory of the build (`static`, `static/js`).
    pub fn is_dir(&self, key: &str) -> bool {
        self.dirs.contains(key)
    }

    pub fn file_count(&self) -> usize {
        self.files.len() + 1
    }
}

/// Whether a file name carries a content hash, so that its content never changes under
/// that name. Two build tools' conventions, checked on the last path segment:
///
/// - Vue CLI / webpack (HAMi-WebUI up to 1.x, `vue.config.js`): `name.<hex ≥ 8>.ext`, e.g.
///   `static/js/app.3f2a9c1b.js`.
/// - Vite / Rollup (2.0, `vite.config.js`): `name-<8 base64url chars>.ext`, e.g.
///   `static/index-BxK3f9aZ.js`. To keep plain hyphenated names (`static/images/hami-logo.svg`,
///   copied verbatim from `public/`) from being frozen for a year, the 8 characters must
///   include a digit or an upper-case letter; a real hash lacks both with probability
///   ~0.14%, and then merely gets `no-cache`, which is safe.
pub fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    if ext.is_empty() || stem.is_empty() {
        return false;
    }
    // webpack: the segment between the last two dots is hex, at least 8 long.
    if let Some((head, hash)) = stem.rsplit_once('.') {
        if !head.is_empty() && hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return true;
        }
    }
    // Vite: `-` then exactly 8 base64url characters at the end of the stem.
    let bytes = stem.as_bytes();
    if bytes.len() < 10 || bytes[bytes.len() - 9] != b'-' {
        return false;
    }
    let hash = &bytes[bytes.len() - 8..];
    hash.iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && hash
            .iter()
            .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// `Content-Type` by extension; the types a Vue/Vite build emits, `application/octet-stream`
/// otherwise (sent with `nosniff`, so a browser never guesses).
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// Types worth compressing: text, and binary formats that are not compressed already
/// (uncompressed fonts, icons, wasm). PNG, JPEG, WOFF2 and friends are left alone.
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || matches!(
            content_type,
            "application/json"
                | "application/manifest+json"
                | "application/xml"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
                | "application/wasm"
        )
}

/// Best compression: it runs once per file at start, never per request.
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3),
        flate2::Compression::best(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_of_both_build_tools() {
        for name in [
            "static/js/app.3f2a9c1b.js",
            "static/css/chunk-vendors.0123abcd.css",
            "static/fonts/element-icons.f1a45d74.woff",
            "static/index-BxK3f9aZ.js",
            "static/index-a1b2c3d4.css",
            "static/vendor-_-x9QqZz.js",
            "static/img/logo.4c3e2a1fdeadbeef.png",
        ] {
            assert!(is_hashed_asset(name), "{name} should be hashed");
        }
        for name in [
            "index.html",
            "favicon.svg",
            "static/images/hami-logo.svg",
            "static/images/vast-logo.svg",
            "static/images/KubeSphere.svg",
            "static/js/element-datepick.js",
            "static/js/app.js",
            "static/js/app.min.js",
            "static/js/a.deadbee.js",
            ".12345678.js",
            "static/12345678",
            "-BxK3f9aZ.js",
        ] {
            assert!(!is_hashed_asset(name), "{name} should not be hashed");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    fn write(dir: &Path, rel: &str, body: &[u8]) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    #[test]
    fn loads_a_build_and_precompresses_text() {
        let dir = tempfile::tempdir().unwrap();
        let js = "console.log('hami');\n".repeat(50);
        write(
            dir.path(),
            "index.html",
            b"<head><base data-hami-webui-base href=\"/\"></head>",
        );
        write(dir.path(), "static/js/app.0123abcd.js", js.as_bytes());
        write(dir.path(), "static/img/x.png", &[0u8; 400]);
        write(dir.path(), ".git/config", b"secret");
        let site = StaticSite::load(dir.path(), "/hami/").unwrap();
        assert_eq!(
            site.index().body.as_ref(),
            b"<head><base data-hami-webui-base href=\"/hami/\"></head>"
        );
        let app = site.file("static/js/app.0123abcd.js").unwrap();
        assert_eq!(app.cache, CachePolicy::Immutable);
        let packed = app.gzip.as_ref().expect("gzip form");
        let mut unpacked = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, js);
        assert!(site.file("static/img/x.png").unwrap().gzip.is_none());
        assert!(site.file(".git/config").is_none());
        assert!(site.file("index.html").is_none());
        assert!(site.is_dir("static/js"));
        assert_eq!(site.file_count(), 3);
    }

    #[test]
    fn missing_index_and_links_out_of_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app.js", b"x");
        assert!(matches!(
            StaticSite::load(dir.path(), "/"),
            Err(SiteError::NoIndex(_))
        ));
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", b"secret");
        write(dir.path(), "index.html", b"<html></html>");
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            dir.path().join("leak.txt"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("app.js"), dir.path().join("alias.js")).unwrap();
        let site = StaticSite::load(dir.path(), "/").unwrap();
        assert!(site.file("leak.txt").is_none());
        assert!(site.file("alias.js").is_some());
        assert!(StaticSite::load(&dir.path().join("nope"), "/").is_err());
    }
}
