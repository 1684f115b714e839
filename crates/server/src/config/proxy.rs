//! The pull-through proxy's settings besides its address (`REGKEEPER_PROXY_LISTEN`):
//! its blob cache, on local disk (`REGKEEPER_PROXY_CACHE_DIR`) or on S3 shared by every
//! replica (`REGKEEPER_PROXY_CACHE_S3_URL`), capped by `REGKEEPER_PROXY_CACHE_MAX_BYTES`,
//! and
//! HTTPS on its listener (`REGKEEPER_PROXY_TLS_CERT_FILE`,
//! `REGKEEPER_PROXY_TLS_KEY_FILE`). Kept apart from `config.rs` so each setting's
//! parsing and validation sit beside its type.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The pull-through proxy's settings besides its address (`proxy_listen`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `REGKEEPER_PROXY_CACHE_DIR`: where verified blobs are kept; no cache when unset.
    pub cache_dir: Option<PathBuf>,
    /// `REGKEEPER_PROXY_CACHE_S3_URL` (`s3://BUCKET/PREFIX`): the blob cache on
    /// S3-compatible storage, shared by every replica; never with `cache_dir`.
    pub cache_s3: Option<S3Location>,
    /// Where S3 is reached when not at AWS: `AWS_ENDPOINT_URL_S3`, else
    /// `AWS_ENDPOINT_URL` (addressed path-style).
    pub s3_endpoint_url: Option<String>,
    /// `REGKEEPER_PROXY_CACHE_MAX_BYTES`: the cache's size cap.
    pub cache_max_bytes: u64,
    /// `REGKEEPER_PROXY_TLS_CERT_FILE` and `REGKEEPER_PROXY_TLS_KEY_FILE`: PEM files for
    /// HTTPS on the proxy listener; plain HTTP when unset.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A place in a bucket: `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing slashes; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Reads `s3://BUCKET` or `s3://BUCKET/PREFIX`; `None` for anything else, or a bucket
    /// name S3 would refuse (3 to 63 lower-case letters, digits, dots and hyphens).
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.trim().strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        let prefix = prefix.trim_matches('/');
        let prefix_valid = !prefix.contains("//")
            && !prefix
                .split('/')
                .any(|segment| segment == "." || segment == "..")
            && !prefix.chars().any(char::is_control);
        (bucket_valid && prefix_valid).then(|| Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// The blob cache's size when none is given.
pub const DEFAULT_PROXY_CACHE_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// A size in the file: a number of bytes, or text such as `10GiB`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ProxyConfig {
    /// Reads the cache and TLS settings (environment first, then the file's values),
    /// each validated with an error naming its key.
    pub(super) fn load(
        cache_dir: Option<PathBuf>,
        cache_s3_url: Option<String>,
        s3_endpoint_url: Option<String>,
        cache_max_bytes: Option<ByteSize>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        const KEY: &str = "REGKEEPER_PROXY_CACHE_MAX_BYTES";
        const S3_KEY: &str = "REGKEEPER_PROXY_CACHE_S3_URL";
        let cache_s3 = cache_s3_url
            .map(|url| {
                S3Location::parse(&url).ok_or_else(|| ConfigError::Invalid {
                    key: S3_KEY,
                    message: format!(
                        "`{url}` is not s3://BUCKET/PREFIX with a valid bucket name \
                         (3 to 63 lower-case letters, digits, dots and hyphens)"
                    ),
                })
            })
            .transpose()?;
        if cache_s3.is_some() && cache_dir.is_some() {
            return Err(ConfigError::Invalid {
                key: S3_KEY,
                message: "set it or REGKEEPER_PROXY_CACHE_DIR, not both: the blob cache is \
                          either on S3, shared by every replica, or on this machine's disk"
                    .into(),
            });
        }
        let cache_max_bytes = match cache_max_bytes {
            None => DEFAULT_PROXY_CACHE_MAX_BYTES,
            Some(ByteSize::Bytes(bytes)) => bytes,
            Some(ByteSize::Text(text)) => {
                parse_byte_size(&text).ok_or_else(|| ConfigError::Invalid {
                    key: KEY,
                    message: format!("`{text}` is not a size such as 1073741824, 512MiB or 10GiB"),
                })?
            }
        };
        if cache_max_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: KEY,
                message: "must be at least 1 MiB".into(),
            });
        }
        let tls = match (cert_file, key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (key_name, path) in [
                    ("REGKEEPER_PROXY_TLS_CERT_FILE", &cert),
                    ("REGKEEPER_PROXY_TLS_KEY_FILE", &key),
                ] {
                    if !path.is_file() {
                        return Err(ConfigError::Invalid {
                            key: key_name,
                            message: format!("{} is not a readable file", path.display()),
                        });
                    }
                }
                Some((cert, key))
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_PROXY_TLS_KEY_FILE",
                    message: "required with REGKEEPER_PROXY_TLS_CERT_FILE".into(),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "REGKEEPER_PROXY_TLS_CERT_FILE",
                    message: "required with REGKEEPER_PROXY_TLS_KEY_FILE".into(),
                })
            }
        };
        Ok(ProxyConfig {
            cache_dir,
            cache_s3,
            s3_endpoint_url,
            cache_max_bytes,
            tls,
        })
    }
}

/// `1073741824`, `512MiB`, `10GiB`, `2TiB` (also `KB`/`MB`/`GB` in powers of ten).
fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::load;
    use super::*;

    #[test]
    fn proxy_settings_are_checked_and_sizes_read() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.proxy,
            ProxyConfig {
                cache_dir: None,
                cache_s3: None,
                s3_endpoint_url: None,
                cache_max_bytes: DEFAULT_PROXY_CACHE_MAX_BYTES,
                tls: None,
            }
        );
        let config = load(&[
            ("REGKEEPER_PROXY_CACHE_DIR", "/var/cache/regkeeper"),
            ("REGKEEPER_PROXY_CACHE_MAX_BYTES", "512MiB"),
        ])
        .unwrap();
        assert_eq!(
            config.proxy.cache_dir.as_deref(),
            Some(Path::new("/var/cache/regkeeper"))
        );
        assert_eq!(config.proxy.cache_max_bytes, 512 << 20);
        let config = load(&[
            (
                "REGKEEPER_PROXY_CACHE_S3_URL",
                "s3://layers.example/regkeeper/cache/",
            ),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001"),
        ])
        .unwrap();
        assert_eq!(
            config.proxy.cache_s3,
            Some(S3Location {
                bucket: "layers.example".into(),
                prefix: "regkeeper/cache".into()
            })
        );
        assert_eq!(
            config.proxy.s3_endpoint_url.as_deref(),
            Some("http://127.0.0.1:9001")
        );
        let config = load(&[
            ("REGKEEPER_PROXY_CACHE_S3_URL", "s3://bucket"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(config.proxy.cache_s3.unwrap().prefix, "");
        assert_eq!(
            config.proxy.s3_endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        for bad in [
            "https://bucket/x",
            "s3://",
            "s3://UPPER/x",
            "s3://b/x",
            "s3://ok-bucket/a/../b",
        ] {
            assert_eq!(S3Location::parse(bad), None, "{bad}");
        }
        assert_eq!(parse_byte_size("10GiB"), Some(10 << 30));
        assert_eq!(parse_byte_size("1073741824"), Some(1 << 30));
        assert_eq!(parse_byte_size("2 GB"), Some(2_000_000_000));
        assert_eq!(parse_byte_size("lots"), None);
        assert_eq!(parse_byte_size("99999999999999TiB"), None);
        for (variables, key) in [
            (
                vec![("REGKEEPER_PROXY_CACHE_MAX_BYTES", "ten")],
                "REGKEEPER_PROXY_CACHE_MAX_BYTES",
            ),
            (
                vec![("REGKEEPER_PROXY_CACHE_MAX_BYTES", "1KiB")],
                "REGKEEPER_PROXY_CACHE_MAX_BYTES",
            ),
            (
                vec![("REGKEEPER_PROXY_TLS_CERT_FILE", "/etc/hostname")],
                "REGKEEPER_PROXY_TLS_KEY_FILE",
            ),
            (
                vec![("REGKEEPER_PROXY_CACHE_S3_URL", "bucket/prefix")],
                "REGKEEPER_PROXY_CACHE_S3_URL",
            ),
            (
                vec![
                    ("REGKEEPER_PROXY_CACHE_S3_URL", "s3://bucket/prefix"),
                    ("REGKEEPER_PROXY_CACHE_DIR", "/var/cache/regkeeper"),
                ],
                "REGKEEPER_PROXY_CACHE_S3_URL",
            ),
            (
                vec![
                    ("REGKEEPER_PROXY_TLS_CERT_FILE", "/nonexistent/cert.pem"),
                    ("REGKEEPER_PROXY_TLS_KEY_FILE", "/etc/hostname"),
                ],
                "REGKEEPER_PROXY_TLS_CERT_FILE",
            ),
        ] {
            let error = load(&variables).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
