#![no_main]
use libfuzzer_sys::fuzz_target;

// A CA directory's .signing_policy file and a subject matched against it: never a panic (the
// glob matcher backtracks).
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let policy = ringmover::gsi::policy::SigningPolicy::parse(&text);
    let middle = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let (a, b) = text.split_at(middle);
    let _ = policy.allows(a, b);
    let _ = policy.allows("/O=Grid/CN=Test CA", &text);
});
