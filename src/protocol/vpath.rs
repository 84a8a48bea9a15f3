//! Virtual paths: what the client names, resolved against the working directory into a clean
//! absolute path under the session root (`/` is the root). Purely lexical; the storage layer
//! still refuses symlinks that leave the root.

use thiserror::Error;

/// Why a path was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    #[error("Path escapes the root directory.")]
    Escape,
    #[error("Path contains a NUL byte.")]
    Nul,
}

/// Resolves `arg` against `cwd` (both absolute-virtual). `..` above the root is an error
/// rather than being clamped, so an escape attempt is answered with 550 instead of silently
/// reading something else.
pub fn resolve(cwd: &str, arg: &str) -> Result<String, PathError> {
    if arg.contains('\0') {
        return Err(PathError::Nul);
    }
    let mut parts: Vec<&str> = Vec::new();
    let base = if arg.starts_with('/') { "" } else { cwd };
    for comp in base.split('/').chain(arg.split('/')) {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or(PathError::Escape)?;
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The parent of a resolved path; the root is its own parent.
pub fn parent(path: &str) -> String {
    match path.trim_end_matches('/').rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => path[..i].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_table() {
        let table = [
            ("/", "a", Ok("/a")),
            ("/a", "b/c", Ok("/a/b/c")),
            ("/a", "/x//y/./z", Ok("/x/y/z")),
            ("/a/b", "..", Ok("/a")),
            ("/a/b", "../../c", Ok("/c")),
            ("/", ".", Ok("/")),
            ("/", "..", Err(PathError::Escape)),
            ("/a", "../../etc/passwd", Err(PathError::Escape)),
            ("/", "/../x", Err(PathError::Escape)),
            ("/", "a\0b", Err(PathError::Nul)),
        ];
        for (cwd, arg, want) in table {
            assert_eq!(resolve(cwd, arg), want.map(String::from), "{cwd} + {arg}");
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/"), "/");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b"), "/a");
    }
}
