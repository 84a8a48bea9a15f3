//! What the server advertises: FEAT lines, HELP and SITE HELP texts, MLST facts.

use super::command::VERBS;

/// FEAT lines (RFC 2389), each with its single leading space. Only features that work end to end
/// are listed: globus-url-copy changes behaviour on `REST STREAM`, `SIZE`, `MLST` and `SBUF`.
pub const FEATURES: &[&str] = &[
    " ABUF",
    " CKSM MD5:10;ADLER32:10;CRC32C:10;SHA1:10;SHA256:11;SHA512:12;",
    " CKSUM MD5,ADLER32,CRC32C,SHA-1,SHA-256,SHA-512",
    " DCAU",
    " ERET",
    " ESTO",
    " GETPUT",
    " MDTM",
    " MFMT",
    " MLST Type*;Size*;Modify*;Perm*;UNIX.mode*;",
    " MODEX",
    " PARALLEL",
    " PASV AllowDelayed;",
    " REST STREAM",
    " SBUF",
    " SIZE",
    " SPAS",
    " SPOR",
    " TVFS",
    " UTF8",
];

/// Canonical (Globus) names of the checksum algorithms, for CKSM and SCKS.
const CHECKSUMS: &[&str] = &["MD5", "ADLER32", "CRC32C", "SHA1", "SHA256", "SHA512"];

/// Maps a client's checksum name (`sha-1`, `SHA1`, `Adler32`...) to its canonical name.
pub fn checksum_name(name: &str) -> Option<&'static str> {
    let n: String = name
        .chars()
        .filter(|&c| c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    CHECKSUMS.iter().copied().find(|&c| c == n)
}

/// The SITE subcommands that SITE HELP lists. globus-url-copy greps this text for the
/// buffer-size commands (`docs/protocol-notes.md#buffer-commands`).
pub const SITE_COMMANDS: &[&str] = &[
    "BUFSIZE",
    "CHGRP",
    "CHMOD",
    "CLIENTINFO",
    "HELP",
    "RETRBUFSIZE",
    "STORBUFSIZE",
    "UTIME",
];

/// The `211` FEAT reply lines; `getput`: whether `GETPUT` is among them (the commands work
/// either way; the feature only tells clients to prefer them).
pub fn feat_lines(getput: bool, dcau: bool, tls: bool) -> Vec<String> {
    let mut lines = vec!["Extensions supported".to_string()];
    if tls {
        // RFC 4217; lftp upgrades by itself when it sees AUTH TLS.
        lines.extend([" AUTH TLS", " PBSZ", " PROT"].map(String::from));
    }
    lines.extend(
        FEATURES
            .iter()
            .filter(|f| getput || f.trim() != "GETPUT")
            .filter(|f| dcau || f.trim() != "DCAU")
            .map(|s| s.to_string()),
    );
    lines.push("End.".into());
    lines
}

/// The `214` HELP reply lines: every recognised verb, eight per line.
pub fn help_lines() -> Vec<String> {
    let mut lines = vec!["The following commands are recognized:".to_string()];
    for chunk in VERBS.chunks(8) {
        lines.push(format!(
            "    {}",
            chunk.iter().map(|v| format!("{v:<8}")).collect::<String>().trim_end()
        ));
    }
    lines.push("End".into());
    lines
}

/// The `214` SITE HELP reply lines.
pub fn site_help_lines() -> Vec<String> {
    let mut lines = vec!["The following SITE commands are recognized:".to_string()];
    lines.extend(SITE_COMMANDS.iter().map(|c| format!("    SITE {c}")));
    lines.push("End".into());
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feat_is_211_framed_with_leading_spaces() {
        let lines = feat_lines(true, true, false);
        assert!(!feat_lines(false, false, false)
            .iter()
            .any(|l| l.contains("GETPUT") || l.contains("DCAU") || l.contains("AUTH")));
        assert!(feat_lines(false, false, true).iter().any(|l| l == " AUTH TLS"));
        assert!(lines.iter().any(|l| l == " GETPUT"));
        assert_eq!(lines.first().map(String::as_str), Some("Extensions supported"));
        assert!(lines[1..lines.len() - 1].iter().all(|l| l.starts_with(' ')));
        assert!(lines.iter().any(|l| l == " REST STREAM"));
    }

    #[test]
    fn site_help_names_buffer_commands_after_a_space() {
        let text = site_help_lines().join("\n");
        assert!(text.contains(" RETRBUFSIZE") && text.contains(" STORBUFSIZE") && text.contains(" BUFSIZE"));
    }
}
