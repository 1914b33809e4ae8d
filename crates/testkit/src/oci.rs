//! Deterministic OCI image layouts (no network, no container runtime).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use serde_json::json;

use crate::util::{hex, write_file};

/// Media type of the manifests written.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of the configs written.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of the (uncompressed) layers written.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&SHA256, data).as_ref())
    )
}

/// A fast deterministic pseudo-random byte generator (SplitMix64). Not cryptographic.
#[derive(Clone, Debug)]
pub struct PseudoRandom {
    state: u64,
}

impl PseudoRandom {
    /// A generator from a 64-bit seed.
    pub fn new(seed: u64) -> Self {
        PseudoRandom { state: seed }
    }

    /// A generator seeded from sha256 of `label`.
    pub fn from_label(label: &str) -> Self {
        let d = ring::digest::digest(&SHA256, label.as_bytes());
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&d.as_ref()[..8]);
        Self::new(u64::from_le_bytes(seed))
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf`. The byte stream does not depend on how it is split into calls as long as
    /// every call but the last uses a multiple of 8 bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// A reader yielding `remaining` pseudo-random bytes.
struct RandomReader {
    rng: PseudoRandom,
    remaining: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for RandomReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            let n = self.remaining.min(64 * 1024) as usize;
            self.buf.resize(n, 0);
            self.rng.fill(&mut self.buf);
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Writes to a file while hashing.
struct HashingWriter {
    inner: BufWriter<File>,
    ctx: Context,
    len: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What [`OciLayout::build`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The layout directory.
    pub path: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// The manifest bytes as written.
    pub manifest: Vec<u8>,
    /// `sha256:…` of the config.
    pub config_digest: String,
    /// `sha256:…` of each layer blob (uncompressed tars, so these are also the diff_ids).
    pub layer_digests: Vec<String>,
    /// Size of each layer blob (the tar, slightly larger than the payload).
    pub layer_sizes: Vec<u64>,
}

impl ImageInfo {
    /// `oci:<path>:<tag>` for skopeo.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.path.display(), self.tag)
    }

    /// Path of a blob in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.path.join("blobs").join("sha256").join(hex)
    }
}

/// Builds OCI image layouts.
#[derive(Debug)]
pub struct OciLayout;

impl OciLayout {
    /// Writes (or adds to) an OCI image layout at `dir` holding one image tagged `tag` with one
    /// uncompressed tar layer per entry of `layer_sizes`; layer `i` holds `/layer-<i>.bin` with
    /// that many pseudo-random bytes seeded from `tag` and `i` (same tag → same digests;
    /// different tags → different images). Layers are streamed to disk, so large sizes are
    /// fine. An existing image with the same tag in `dir` is replaced in `index.json`.
    ///
    /// Use it as `oci:<dir>:<tag>` ([`ImageInfo::oci_ref`]). Note that skopeo gzips
    /// uncompressed layers on push unless `--preserve-digests` is given (TESTGROUND G11).
    pub fn build(dir: impl AsRef<Path>, tag: &str, layer_sizes: &[u64]) -> ImageInfo {
        let dir = dir.as_ref().to_path_buf();
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", blobs.display()));
        write_file(&dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#);

        let mut layer_digests = Vec::new();
        let mut sizes = Vec::new();
        for (i, &size) in layer_sizes.iter().enumerate() {
            let (digest, len) = write_layer(&blobs, tag, i, size);
            layer_digests.push(digest);
            sizes.push(len);
        }

        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/layer-0.bin"]},
            "rootfs": {"type": "layers", "diff_ids": layer_digests},
            "history": layer_sizes.iter().enumerate()
                .map(|(i, s)| json!({"created_by": format!("connectors-testkit layer {i} ({s} bytes)")}))
                .collect::<Vec<_>>(),
        });
        let config_bytes = serde_json::to_vec(&config).expect("serialise config");
        let config_digest = write_blob(&blobs, &config_bytes);

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_bytes.len()},
            "layers": layer_digests.iter().zip(&sizes)
                .map(|(d, s)| json!({"mediaType": LAYER_MEDIA_TYPE, "digest": d, "size": s}))
                .collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("serialise manifest");
        let manifest_digest = write_blob(&blobs, &manifest_bytes);

        let index_path = dir.join("index.json");
        let mut manifests: Vec<serde_json::Value> = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
            .unwrap_or_default();
        manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
        manifests.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        let index = json!({"schemaVersion": 2, "manifests": manifests});
        write_file(
            &index_path,
            serde_json::to_vec(&index).expect("serialise index"),
        );

        ImageInfo {
            path: dir,
            tag: tag.into(),
            manifest_digest,
            manifest_size: manifest_bytes.len() as u64,
            manifest: manifest_bytes,
            config_digest,
            layer_digests,
            layer_sizes: sizes,
        }
    }
}

fn write_blob(blobs: &Path, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    write_file(&path, data);
    digest
}

fn write_layer(blobs: &Path, tag: &str, index: usize, size: u64) -> (String, u64) {
    let tmp = blobs.join(format!(".tmp-layer-{index}-{}", std::process::id()));
    let file =
        File::create(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
    let writer = HashingWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        ctx: Context::new(&SHA256),
        len: 0,
    };
    let mut builder = tar::Builder::new(writer);
    let mut header = tar::Header::new_ustar();
    header
        .set_path(format!("layer-{index}.bin"))
        .expect("tar path");
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let reader = RandomReader {
        rng: PseudoRandom::from_label(&format!("connectors-testkit/{tag}/{index}")),
        remaining: size,
        buf: Vec::new(),
        pos: 0,
    };
    builder
        .append(&header, reader)
        .unwrap_or_else(|e| panic!("cannot write layer {}: {e}", tmp.display()));
    let mut writer = builder.into_inner().expect("finish tar");
    writer.flush().expect("flush layer");
    let HashingWriter { inner, ctx, len } = writer;
    drop(inner);
    let digest = format!("sha256:{}", hex(ctx.finish().as_ref()));
    let dest = blobs.join(digest.trim_start_matches("sha256:"));
    std::fs::rename(&tmp, &dest)
        .unwrap_or_else(|e| panic!("cannot rename {} → {}: {e}", tmp.display(), dest.display()));
    (digest, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_split_independent() {
        let mut a = PseudoRandom::new(7);
        let mut b = PseudoRandom::new(7);
        let whole = a.bytes(100);
        let mut parts = b.bytes(64);
        parts.extend(b.bytes(36));
        assert_eq!(whole, parts);
        assert_ne!(PseudoRandom::new(8).bytes(16), whole[..16]);
    }

    #[test]
    fn layout_is_consistent_and_deterministic() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let a = OciLayout::build(d1.path(), "v1", &[1000, 0, 70_000]);
        let b = OciLayout::build(d2.path(), "v1", &[1000, 0, 70_000]);
        assert_eq!(
            a.manifest_digest, b.manifest_digest,
            "same tag → same image"
        );
        let c = OciLayout::build(d1.path(), "v2", &[1000]);
        assert_ne!(
            a.layer_digests[0], c.layer_digests[0],
            "tags differ → layers differ"
        );

        // Every blob's name is its digest.
        for d in a
            .layer_digests
            .iter()
            .chain([&a.config_digest, &a.manifest_digest])
        {
            let bytes = std::fs::read(a.blob_path(d)).unwrap();
            assert_eq!(&sha256_digest(&bytes), d);
        }
        // The layer tar holds one file of the requested size.
        let layer = std::fs::read(a.blob_path(&a.layer_digests[2])).unwrap();
        let mut ar = tar::Archive::new(&layer[..]);
        let entries: Vec<_> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(entries, vec![("layer-2.bin".to_string(), 70_000)]);
        assert_eq!(a.layer_sizes[2], layer.len() as u64);

        // index.json has both tags.
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d1.path().join("index.json")).unwrap()).unwrap();
        let tags: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(tags, vec!["v1", "v2"]);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.blob_path(&a.config_digest)).unwrap()).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][2], a.layer_digests[2].as_str());
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
    }
}
