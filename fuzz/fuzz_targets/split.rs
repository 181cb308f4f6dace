//! Shared by the targets: cuts a fuzz input into length-prefixed parts, so one input can carry
//! several files (a config, a tokenizer, weights) and mutations stay local to one of them.

/// Up to `n` parts: each is a little-endian u16 length then that many bytes; the last part is
/// whatever remains.
pub fn parts(mut data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    while out.len() + 1 < n && data.len() >= 2 {
        let len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        out.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    out.push(data);
    out.resize(n, &[]);
    out
}
