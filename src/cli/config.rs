//! `--config FILE` for `serve`, `door` and `pool`, and `ringmover config check FILE`.
//!
//! One TOML file may carry every role of a site: top-level keys apply to each role that has
//! that option (`root` to serve and pool, `pool-keys` to door), and the tables `[serve]`,
//! `[door]` and `[pool]` to their role only. Keys are the long flags without the dashes; a
//! flag given on the command line wins over the file. The file's settings become flags
//! (`--key=value`), so clap checks them exactly as it checks the command line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, Args, CommandFactory, Parser};
use toml_edit::{Item, Value};

use super::{Cli, Cmd};

/// The commands that read `--config`.
pub const ROLES: [&str; 3] = ["serve", "door", "pool"];

/// Options a file may not set: they are about this invocation, not the service.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "verbose"];

/// A parsed configuration file.
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    doc: toml_edit::ImDocument<String>,
}

/// One key of the file as flags, with the line it is on (for error messages).
struct Setting {
    long: String,
    line: usize,
    flags: Vec<String>,
}

/// The command line with the file's settings added, and where each came from.
pub struct Expanded {
    pub argv: Vec<OsString>,
    origins: Vec<(String, String)>,
}

impl Expanded {
    /// For a clap error about an option the file set: "PATH line N".
    pub fn origin_of(&self, error: &clap::Error) -> Option<&str> {
        let arg = error.get(clap::error::ContextKind::InvalidArg)?.to_string();
        let long = arg.trim_start_matches('-').split([' ', '=', '<']).next()?.to_string();
        self.origins.iter().find(|(l, _)| *l == long).map(|(_, o)| o.as_str())
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let doc = toml_edit::ImDocument::parse(text.clone())
            .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
        let file = ConfigFile {
            path: path.to_path_buf(),
            text,
            doc,
        };
        for role in ROLES {
            file.settings(role)?;
        }
        Ok(file)
    }

    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        let at = span.map_or(0, |s| s.start).min(self.text.len());
        self.text[..at].matches('\n').count() + 1
    }

    fn here(&self, line: usize) -> String {
        format!("{} line {line}", self.path.display())
    }

    /// The role tables the file has.
    pub fn sections(&self) -> Vec<&'static str> {
        ROLES.into_iter().filter(|r| self.doc.contains_key(r)).collect()
    }

    /// The top-level keys that are options (not role tables).
    fn top_level_keys(&self) -> Vec<String> {
        self.doc
            .iter()
            .filter(|(k, item)| !(ROLES.contains(k) && item.is_table()))
            .map(|(k, _)| k.to_string())
            .collect()
    }

    /// Every setting for `role`: the top-level keys it has, then its own table's.
    fn settings(&self, role: &str) -> Result<Vec<Setting>> {
        let commands = Cli::command();
        let command = |r: &str| commands.find_subcommand(r).cloned();
        let own = command(role).with_context(|| format!("no command {role}"))?;
        let known_elsewhere = |key: &str| {
            ROLES
                .iter()
                .filter_map(|r| command(r))
                .any(|c| c.get_arguments().any(|a| a.get_long() == Some(key)))
        };
        let mut out = Vec::new();
        for (key, item) in self.doc.iter() {
            let line = self.line(self.doc.key(key).and_then(|k| k.span()));
            if let Some(table) = item.as_table().filter(|_| ROLES.contains(&key)) {
                if key == role {
                    for (k, v) in table.iter() {
                        let line = self.line(table.key(k).and_then(|k| k.span()));
                        let setting = self.setting(&own, k, v, line)?.with_context(|| {
                            format!("{}: '{k}' is not an option of `ringmover {role}`", self.here(line))
                        })?;
                        out.push(setting);
                    }
                }
                continue;
            }
            match self.setting(&own, key, item, line)? {
                Some(s) => out.push(s),
                None if known_elsewhere(key) && !NOT_IN_FILE.contains(&key) => {}
                None => bail!(
                    "{}: '{key}' is not an option of `ringmover serve`, `door` or `pool`",
                    self.here(line)
                ),
            }
        }
        Ok(out)
    }

    /// `key = value` as the flags of `command`; None when it has no such option.
    fn setting(&self, command: &clap::Command, key: &str, item: &Item, line: usize) -> Result<Option<Setting>> {
        if NOT_IN_FILE.contains(&key) {
            bail!("{}: '{key}' cannot be set in a config file", self.here(line));
        }
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(key)) else {
            return Ok(None);
        };
        let flags =
            flags(key, arg.get_action(), item).map_err(|why| anyhow::anyhow!("{}: {key}: {why}", self.here(line)))?;
        Ok(Some(Setting {
            long: key.to_string(),
            line,
            flags,
        }))
    }
}

/// A TOML value as flags for an option of the given kind.
fn flags(key: &str, action: &ArgAction, item: &Item) -> Result<Vec<String>, String> {
    let value = item.as_value().ok_or("expected a value, not a table")?;
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.value().clone()),
        Value::Integer(i) => Ok(i.value().to_string()),
        Value::Float(f) => Ok(f.value().to_string()),
        Value::Boolean(_) => Err("expected a value, not true or false".to_string()),
        Value::Datetime(d) => Ok(d.value().to_string()),
        Value::Array(_) | Value::InlineTable(_) => Err("expected one value".to_string()),
    };
    match action {
        ArgAction::SetTrue => match value.as_bool() {
            Some(true) => Ok(vec![format!("--{key}")]),
            Some(false) => Ok(Vec::new()),
            None => Err("expected true or false".into()),
        },
        ArgAction::Append => match value {
            Value::Array(a) => a.iter().map(|v| scalar(v).map(|s| format!("--{key}={s}"))).collect(),
            v => Ok(vec![format!("--{key}={}", scalar(v)?)]),
        },
        _ => Ok(vec![format!("--{key}={}", scalar(value)?)]),
    }
}

/// Adds the settings of the `--config` file of a `serve`, `door` or `pool` command line as
/// flags, leaving out those the command line gives. Other command lines come back unchanged.
pub fn expand(argv: Vec<OsString>) -> Result<Expanded> {
    let unchanged = |argv| {
        Ok(Expanded {
            argv,
            origins: Vec::new(),
        })
    };
    let Ok(matches) = Cli::command().ignore_errors(true).try_get_matches_from(&argv) else {
        return unchanged(argv);
    };
    let Some((role, sub)) = matches.subcommand().filter(|(r, _)| ROLES.contains(r)) else {
        return unchanged(argv);
    };
    let Some(path) = sub.try_get_one::<PathBuf>("config").ok().flatten() else {
        return unchanged(argv);
    };
    let file = ConfigFile::load(path)?;
    let command = Cli::command();
    let role_command = command
        .find_subcommand(role)
        .with_context(|| format!("no command {role}"))?;
    let mut argv = argv;
    let mut origins = Vec::new();
    for setting in file.settings(role)? {
        let id = role_command
            .get_arguments()
            .find(|a| a.get_long() == Some(&setting.long))
            .map(|a| a.get_id().to_string())
            .unwrap_or_default();
        if sub.value_source(&id) == Some(ValueSource::CommandLine) {
            continue;
        }
        argv.extend(setting.flags.into_iter().map(OsString::from));
        origins.push((setting.long, file.here(setting.line)));
    }
    Ok(Expanded { argv, origins })
}

/// Why a command line was not taken.
#[derive(Debug)]
pub enum ParseError {
    /// From clap, about the command line (or --help / --version): `exit()` prints it.
    Clap(clap::Error),
    /// About the config file, with its path and line.
    Config(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Clap(e) => write!(f, "{}", e.render()),
            ParseError::Config(m) => f.write_str(m),
        }
    }
}

/// Parses a command line, `--config` file included; errors name the file's line.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, ParseError> {
    let expanded = expand(argv).map_err(|e| ParseError::Config(format!("{e:#}")))?;
    Cli::try_parse_from(&expanded.argv).map_err(|e| match expanded.origin_of(&e) {
        Some(origin) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            ParseError::Config(format!("{} (set in {origin})", first.trim_start_matches("error: ")))
        }
        None => ParseError::Clap(e),
    })
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The TOML file to check.
    pub file: PathBuf,
    /// Check it for these roles [default: the roles it has tables for, else those that have
    /// every top-level key].
    #[arg(long, value_parser = ROLES)]
    pub role: Vec<String>,
}

/// `config check FILE`: every key known, every value valid, the files it names readable;
/// nothing is bound or started.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let file = ConfigFile::load(&args.file)?;
    let roles = if !args.role.is_empty() {
        args.role.clone()
    } else if !file.sections().is_empty() {
        file.sections().into_iter().map(String::from).collect()
    } else {
        let keys = file.top_level_keys();
        let fits = |role: &str| {
            let cmd = Cli::command().find_subcommand(role).cloned();
            cmd.is_some_and(|c| keys.iter().all(|k| c.get_arguments().any(|a| a.get_long() == Some(k))))
        };
        let roles: Vec<String> = ROLES.into_iter().filter(|r| fits(r)).map(String::from).collect();
        if roles.is_empty() {
            bail!("{}: no role has every key; say which with --role", args.file.display());
        }
        roles
    };
    for role in &roles {
        let argv: Vec<OsString> = ["ringmover", role, "--config"]
            .into_iter()
            .map(OsString::from)
            .chain([args.file.clone().into_os_string()])
            .collect();
        let cli = parse(argv).map_err(|e| anyhow::anyhow!("{role}: {}", e.to_string().trim_end()))?;
        match cli.command {
            Cmd::Serve(a) => drop(super::serve::prepare(*a).with_context(|| role.clone())?),
            Cmd::Door(a) => drop(super::door::prepare(a).with_context(|| role.clone())?),
            Cmd::Pool(a) => drop(super::pool::prepare(a).with_context(|| role.clone())?),
            _ => unreachable!("only the roles are checked"),
        }
        println!("{}: valid for `ringmover {role}`", args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn error(argv: Vec<OsString>) -> String {
        parse(argv).map(|_| ()).unwrap_err().to_string()
    }

    fn file(text: &str) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rm.toml");
        std::fs::write(&p, text).unwrap();
        let p = p.to_str().unwrap().to_string();
        (d, p)
    }

    #[test]
    fn flags_win_and_roles_take_their_keys() {
        let (_d, p) = file(
            "root = \"/srv\"\ncores = 4\nport-range = \"1-2\"\nno-anonymous = true\npool-keys = \"/k\"\n\
             [door]\nplace = [\"/raw=a\", \"/x=b\"]\n[pool]\nname = \"p1\"\nkey-file = \"/k\"\n",
        );
        let cli = parse(argv(&["ringmover", "serve", "--config", &p, "--cores", "2"])).unwrap();
        let Cmd::Serve(s) = cli.command else { panic!() };
        assert_eq!((s.cores, s.root.as_deref()), (Some(2), Some(Path::new("/srv"))));
        assert_eq!(s.port_range.as_deref(), Some("1-2"));
        assert!(s.no_anonymous);
        let cli = parse(argv(&["ringmover", "door", "--config", &p])).unwrap();
        let Cmd::Door(d) = cli.command else { panic!() };
        assert_eq!(d.placement, vec!["/raw=a", "/x=b"]);
        assert_eq!(d.pool_keys, PathBuf::from("/k"));
        let cli = parse(argv(&["ringmover", "pool", "--config", &p])).unwrap();
        let Cmd::Pool(pool) = cli.command else { panic!() };
        assert_eq!((pool.name.as_deref(), pool.cores), (Some("p1"), Some(4)));
    }

    #[test]
    fn mistakes_name_the_key_and_line() {
        let (_d, p) = file("root = \"/srv\"\n\nbogus = 1\n");
        let e = error(argv(&["ringmover", "serve", "--config", &p]));
        assert!(e.contains("line 3") && e.contains("'bogus'"), "{e}");
        let (_d, p) = file("[door]\nroot = \"/srv\"\n");
        let e = error(argv(&["ringmover", "door", "--config", &p]));
        assert!(e.contains("line 2") && e.contains("ringmover door"), "{e}");
        let (_d, p) = file("root = \"/srv\"\ncores = \"many\"\n");
        let e = error(argv(&["ringmover", "serve", "--config", &p]));
        assert!(e.contains("line 2") && e.contains("many"), "{e}");
        let (_d, p) = file("no-anonymous = \"yes\"\n");
        let e = error(argv(&["ringmover", "serve", "--config", &p]));
        assert!(e.contains("line 1") && e.contains("true or false"), "{e}");
        let (_d, p) = file("verbose = 2\n");
        assert!(parse(argv(&["ringmover", "serve", "--config", &p])).is_err());
        let (_d, p) = file("root = [\n");
        let e = error(argv(&["ringmover", "serve", "--config", &p]));
        assert!(e.contains("line 1") || e.contains("line 2"), "{e}");
    }

    #[test]
    fn the_packaged_examples_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/config");
        let site = format!("{dir}/ringmover.toml");
        for role in ["serve", "door"] {
            parse(argv(&["ringmover", role, "--config", &site])).unwrap_or_else(|e| panic!("{role}: {e}"));
        }
        let pool = format!("{dir}/pool-a.toml");
        let cli = parse(argv(&["ringmover", "pool", "--config", &pool])).unwrap();
        let Cmd::Pool(p) = cli.command else { panic!() };
        assert_eq!(p.name.as_deref(), Some("a"));
    }
}
