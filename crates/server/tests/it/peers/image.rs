//! A tiny but valid OCI image written as an `oci:` layout directory, so skopeo can
//! push real content without any image having to be fetched from elsewhere.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The digests of one pushed image, each as `sha256:HEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    pub manifest: String,
    pub config: String,
    pub layer: String,
}

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).expect("write blob");
    digest
}

/// One file, `regkeeper-test.txt`, whose text names the image so that different
/// repositories and tags get different digests.
fn layer_tar(text: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    // Fixed metadata keeps the digests reproducible.
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder
        .append_data(&mut header, "regkeeper-test.txt", text.as_bytes())
        .expect("tar entry");
    builder.into_inner().expect("tar archive")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// Writes the image into `layout` (created if needed) under `tag`; `oci:LAYOUT:TAG`
/// then names it for skopeo.
pub fn write_oci_layout(layout: &Path, tag: &str, text: &str) -> ImageDigests {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout directory");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");

    let tar = layer_tar(text);
    let layer_bytes = gzip(&tar);
    let layer = write_blob(layout, &layer_bytes);
    let config_bytes = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
        "history": [{"created_by": "regkeeper integration tests"}],
    }))
    .expect("config JSON");
    let config = write_blob(layout, &config_bytes);
    let manifest_bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer,
            "size": layer_bytes.len(),
        }],
    }))
    .expect("manifest JSON");
    let manifest = write_blob(layout, &manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("index.json");
    ImageDigests {
        manifest,
        config,
        layer,
    }
}
