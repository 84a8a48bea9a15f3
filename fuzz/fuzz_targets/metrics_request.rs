#![no_main]
use libfuzzer_sys::fuzz_target;

// The metrics endpoint's request head, from anyone who reaches the port: never a panic, and
// never the metrics without the token.
fuzz_target!(|data: &[u8]| {
    let Ok(head) = std::str::from_utf8(data) else {
        return;
    };
    let locked = ringmover::metrics::http::Access {
        token: Some(std::sync::Arc::new("fuzz-token".into())),
    };
    let (status, _) = ringmover::metrics::http::respond(head, &locked);
    if status.starts_with("200") {
        assert!(head.contains("fuzz-token"));
    }
    let _ = ringmover::metrics::http::respond(head, &Default::default());
});
