//! `--config FILE`: a TOML file holding, under the option's own long name, any option of the
//! subcommand (`max-conns = 500000`, `read-wait = "5m"`, `no-nodelay = true`).
//!
//! The keys are read off the clap command itself, so a new option is a new key with no line
//! written here, and `switchboard config` prints every one of them with its help and default.
//! The file's values join the command line as if typed after it, except for the options that
//! the command line or the environment already set: precedence is command line, environment,
//! file, default. A key no subcommand knows is an error (a typo must not pass unseen); a key of
//! another subcommand (`data` read by `echo`) is skipped, so one file serves both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and what the parser refused.
        source: Box<toml::de::Error>,
    },
    /// A key that is no option of any subcommand.
    #[error("{path}: unknown key `{key}` (the keys are the long options of `switchboard {subcommand} --help`, without the dashes)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// The subcommand being run.
        subcommand: String,
    },
    /// A value of a type the option cannot take (a table, a date, an array for a
    /// single-valued option).
    #[error("{path}: `{key}` cannot be {what}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the value was.
        what: &'static str,
    },
}

/// The options `--config` never sets: the file's own path, and clap's built-ins.
const NOT_KEYS: [&str; 3] = ["config", "help", "version"];

/// The command-line arguments the file at `path` adds to a run of `subcommand`, given what the
/// command line (and environment) already set in `given`. `root` is the whole command, whose
/// other subcommands' options are the keys skipped rather than refused.
pub fn arguments(
    root: &Command,
    subcommand: &Command,
    given: &ArgMatches,
    path: &Path,
) -> Result<Vec<OsString>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|source| ConfigFileError::Syntax {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let Some(arg) = option(subcommand, &name) else {
            if root
                .get_subcommands()
                .any(|other| option(other, &name).is_some())
            {
                continue;
            }
            return Err(ConfigFileError::UnknownKey {
                path: path.to_owned(),
                key: key.clone(),
                subcommand: subcommand.get_name().to_owned(),
            });
        };
        if matches!(
            given.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let bad = |what| ConfigFileError::BadValue {
            path: path.to_owned(),
            key: key.clone(),
            what,
        };
        push_value(&mut out, arg, &name, value).map_err(bad)?;
    }
    Ok(out)
}

/// The option of `command` whose long name is `name`, if it may come from a file.
fn option<'a>(command: &'a Command, name: &str) -> Option<&'a Arg> {
    settable(command).find(|arg| arg.get_long() == Some(name))
}

/// The options of `command` a file may set, in declaration order.
fn settable(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        !arg.is_hide_set() && arg.get_long().is_some_and(|long| !NOT_KEYS.contains(&long))
    })
}

/// Appends `--name=value` (or `--name` for a set flag) for one key.
fn push_value(
    out: &mut Vec<OsString>,
    arg: &Arg,
    name: &str,
    value: &toml::Value,
) -> Result<(), &'static str> {
    let flag = matches!(arg.get_action(), ArgAction::SetTrue);
    let scalar = |value: &toml::Value| -> Result<String, &'static str> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            toml::Value::Datetime(_) => Err("a date"),
            toml::Value::Array(_) => Err("a nested array"),
            toml::Value::Table(_) => Err("a table"),
        }
    };
    match value {
        toml::Value::Boolean(set) if flag => {
            if *set {
                out.push(format!("--{name}").into());
            }
        }
        _ if flag => return Err("anything but true or false"),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(scalar).collect::<Result<_, _>>()?;
            if let Some(delimiter) = arg.get_value_delimiter() {
                out.push(format!("--{name}={}", items.join(&delimiter.to_string())).into());
            } else if matches!(arg.get_action(), ArgAction::Append) {
                out.extend(items.iter().map(|item| format!("--{name}={item}").into()));
            } else {
                return Err("an array (it takes one value)");
            }
        }
        _ => out.push(format!("--{name}={}", scalar(value)?).into()),
    }
    Ok(())
}

/// The file `switchboard config` prints: every option of `subcommand` with its help as a
/// comment, set to its default, or commented out when its default is computed at start (the
/// help says how). `--config` accepts it unchanged, and it changes nothing.
pub fn defaults(subcommand: &Command) -> String {
    let mut out = format!(
        "# switchboard {name}: every option, set to its default. Pass this file with\n\
         # `switchboard {name} --config FILE`; options on the command line and environment\n\
         # variables win over the file. Keys are the long option names.\n",
        name = subcommand.get_name()
    );
    for arg in settable(subcommand) {
        let name = arg.get_long().expect("settable options have a long name");
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string());
        for line in help.unwrap_or_default().lines() {
            comment(&mut out, line);
        }
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| value.get_name().to_owned())
            .collect();
        if !choices.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue) {
            out.push_str(&format!("# One of: {}.\n", choices.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!(
                "# Also read from the environment variable {}, which wins over this file.\n",
                env.to_string_lossy()
            ));
        }
        let defaults = arg.get_default_values();
        match (arg.get_action(), defaults) {
            (ArgAction::SetTrue, _) => out.push_str(&format!("{name} = false\n")),
            (_, [default]) => {
                let literal = toml_literal(&default.to_string_lossy());
                out.push_str(&format!("{name} = {literal}\n"));
            }
            _ => {
                let placeholder = arg
                    .get_value_names()
                    .and_then(|names| names.first())
                    .map_or("VALUE".to_owned(), |n| n.to_string());
                out.push_str(&format!("# {name} = {placeholder}\n"));
            }
        }
    }
    out
}

/// `text` as comment lines of at most [`WIDTH`] columns, broken at spaces.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.truncate(1);
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The width the printed file's comments wrap at.
const WIDTH: usize = 96;

/// A default value as TOML: numbers and booleans bare, everything else a string.
fn toml_literal(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text == "true" || text == "false" {
        text.to_owned()
    } else {
        toml::Value::String(text.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A subcommand with one option backed by an environment variable no other test reads,
    /// one list option, one repeatable option and one plain flag.
    fn serve() -> Command {
        Command::new("serve")
            .arg(Arg::new("secret").long("secret").env(SECRET_VARIABLE))
            .arg(Arg::new("other").long("other"))
            .arg(Arg::new("list").long("list").value_delimiter(','))
            .arg(Arg::new("repeat").long("repeat").action(ArgAction::Append))
            .arg(Arg::new("on").long("on").action(ArgAction::SetTrue))
    }

    const SECRET_VARIABLE: &str = "SWITCHBOARD_CONFIG_FILE_TEST_SECRET";

    fn added(file_text: &str, command_line: &[&str]) -> Vec<String> {
        try_added(file_text, command_line)
            .expect("a valid file")
            .into_iter()
            .map(|arg| arg.into_string().expect("UTF-8"))
            .collect()
    }

    fn try_added(file_text: &str, command_line: &[&str]) -> Result<Vec<OsString>, ConfigFileError> {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(file_text.as_bytes()).expect("write");
        let root = Command::new("switchboard").subcommand(serve());
        let given = serve()
            .try_get_matches_from(std::iter::once("serve").chain(command_line.iter().copied()))
            .expect("valid arguments");
        arguments(&root, &serve(), &given, file.path())
    }

    #[test]
    fn plain_flags_take_true_or_false() {
        assert_eq!(added("on = true\n", &[]), ["--on"]);
        assert!(added("on = false\n", &[]).is_empty());
        assert!(matches!(
            try_added("on = \"yes\"\n", &[]),
            Err(ConfigFileError::BadValue {
                what: "anything but true or false",
                ..
            })
        ));
    }

    #[test]
    fn the_environment_and_the_command_line_win_over_the_file() {
        std::env::set_var(SECRET_VARIABLE, "from the environment");
        let text = "secret = \"from the file\"\nother = \"from the file\"\n";
        assert_eq!(added(text, &[]), ["--other=from the file"]);
        assert!(added(text, &["--other", "typed"]).is_empty());
        std::env::remove_var(SECRET_VARIABLE);
        assert_eq!(
            added(text, &[]),
            ["--other=from the file", "--secret=from the file"]
        );
    }

    #[test]
    fn arrays_become_a_list_or_repeated_options() {
        assert_eq!(
            added(
                "list = [\"10.0.0.0/8\", \"192.0.2.7\"]\nrepeat = [1, 2]\n",
                &[]
            ),
            ["--list=10.0.0.0/8,192.0.2.7", "--repeat=1", "--repeat=2"]
        );
    }
}
