//! Feeds arbitrary bytes to the GGUF parser: `cargo +nightly fuzz run gguf`.
//!
//! Any input must parse or return an error: no panic, no hang, no allocation
//! sized by an unchecked header count. Accepted files must also re-encode
//! through `GgufWriter` into files that parse again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qgpu::loader::gguf::GgufHeader;
use qgpu::loader::gguf_write::GgufWriter;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = GgufHeader::parse(data) else {
        return;
    };
    for (key, _) in header.metadata().iter() {
        let _ = header.get_u64(key);
        let _ = header.get_f32(key);
        let _ = header.get_str(key);
        let _ = header.get_string_array(key);
        let _ = header.get_u32_array(key);
        let _ = header.get_f32_array(key);
    }

    let mut writer = GgufWriter::new();
    for (key, value) in header.metadata().iter() {
        writer.add_metadata(key, value.clone()).expect("parsed metadata must be writable");
    }
    for t in header.tensors() {
        let bytes = header.tensor_data(data, t).expect("validated tensor must be in bounds");
        assert_eq!(bytes.len() as u64, t.size_bytes);
        writer.add_tensor(t.name.as_str(), &t.dims, t.ggml_type, bytes).expect("parsed tensor must be writable");
    }
    let again = GgufHeader::parse(&writer.to_bytes()).expect("re-encoded file must parse");
    assert_eq!(again.tensors().len(), header.tensors().len());
    assert_eq!(again.metadata().len(), header.metadata().len());
});
