//! What the fuzz targets share, included with `#[path]` since each target is a binary
//! of its own.

/// `haystack` with every `from` replaced by `to`: how a target puts its secret canary
/// where the input says `$S`.
pub fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}
