//! The file store: bytes on disk under their SHA-256, the type sniffed from the content.
//!
//! The same image sent twice is stored once. A file is written to a temporary name, synced and
//! renamed, so a crash never leaves a half file under a real hash.

use std::io::Write as _;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Why a file was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Over the service's size limit.
    #[error("the file is larger than {max} bytes")]
    TooLarge { max: u64 },
    /// Not one of the service's allowed types (as sniffed from the content).
    #[error("files of type {found} are not accepted")]
    TypeNotAllowed { found: String },
    /// An empty upload.
    #[error("the file is empty")]
    Empty,
    /// The chat already holds (or the device has uploaded and not yet sent) as many files or
    /// bytes as one chat may.
    #[error("a chat holds at most {max_files} files and {max_bytes} bytes")]
    QuotaExceeded { max_files: u64, max_bytes: u64 },
    /// The disk failed.
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
}

/// The MIME type of `bytes`, from their magic numbers; `application/octet-stream` when unknown.
fn sniff(bytes: &[u8]) -> &'static str {
    infer::get(bytes).map_or("application/octet-stream", |t| t.mime_type())
}

/// Whether one more file of `size` bytes fits a chat that holds `files` files of `bytes` bytes,
/// within `max_files` and `max_bytes`.
pub(crate) fn within_quota(
    (files, bytes): (u64, u64),
    size: u64,
    max_files: u64,
    max_bytes: u64,
) -> Result<(), FileError> {
    if files >= max_files || bytes.saturating_add(size) > max_bytes {
        return Err(FileError::QuotaExceeded {
            max_files,
            max_bytes,
        });
    }
    Ok(())
}

/// Checks an upload against a service's limits; returns its sniffed type.
pub(crate) fn check(bytes: &[u8], max: u64, allowed: &[String]) -> Result<&'static str, FileError> {
    if bytes.is_empty() {
        return Err(FileError::Empty);
    }
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge { max });
    }
    let found = sniff(bytes);
    if !allowed.iter().any(|a| a == found) {
        return Err(FileError::TypeNotAllowed {
            found: found.to_string(),
        });
    }
    Ok(found)
}

/// Content-addressed files under one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore { dir: dir.into() }
    }

    /// Where the file with this hash lives (two-level fan-out).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(&sha256[..2]).join(sha256)
    }

    /// Stores `bytes` (blocking IO: call from `spawn_blocking`); returns their SHA-256 in hex.
    pub fn put(&self, bytes: &[u8]) -> Result<String, FileError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha);
        if path.exists() {
            return Ok(sha);
        }
        let dir = path.parent().expect("fan-out directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{sha}.{}", crate::bridge::random_hex(4)));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(sha)
    }

    /// Deletes the bytes with this hash (blocking IO). Only the retention sweep calls it, for
    /// bytes no file record names any more.
    pub fn remove(&self, sha256: &str) -> std::io::Result<()> {
        if sha256.len() < 2 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        std::fs::remove_file(self.path(sha256))
    }
}
