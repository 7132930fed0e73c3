//! The optional TOML configuration file, applied under flags and environment variables.
//!
//! Keys are the long flag names (`listen = "0.0.0.0:7233"`, `key = ["a=file:/keys/a"]`).
//! A setting from the file is used only when neither its flag nor its environment variable
//! is given, so precedence is flag > environment > file > default. `[namespaces."NAME"]`
//! sections, which no flag can express, give namespaces (or `*` patterns) keys of their own.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::ArgAction;

use crate::keys::namespaces::SectionSpec;

/// Flag and environment variable that name the file.
pub const CONFIG_FLAG: &str = "config";
pub const CONFIG_ENV: &str = "TEMPORAL_CODEC_PROXY_CONFIG";
/// The table of per-namespace key sections.
const NAMESPACES_TABLE: &str = "namespaces";
/// Environment variables some settings also fall back to, beyond their own.
const FALLBACK_ENV: &[(&str, &str)] = &[("upstream", "TEMPORAL_ADDRESS")];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("configuration file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The command line with the file's settings added as flags, and which settings came
/// from the file.
pub struct WithFile {
    pub args: Vec<OsString>,
    pub from_file: BTreeSet<String>,
    pub path: Option<PathBuf>,
    /// The file's `[namespaces."…"]` sections, in the file's order.
    pub namespaces: Vec<SectionSpec>,
}

/// Finds `--config` (or its environment variable) for the `serve` and `check-config`
/// subcommands and merges the file into `args`.
pub fn merge(args: Vec<OsString>, command: &clap::Command) -> Result<WithFile, ConfigFileError> {
    let Some(path) = config_path(&args) else {
        return Ok(WithFile {
            args,
            from_file: BTreeSet::new(),
            path: None,
            namespaces: Vec::new(),
        });
    };
    let Some(subcommand_at) = args.iter().position(|arg| arg == "serve" || arg == "check-config") else {
        return Ok(WithFile {
            args,
            from_file: BTreeSet::new(),
            path: Some(path),
            namespaces: Vec::new(),
        });
    };
    let subcommand_name = args[subcommand_at].to_string_lossy().into_owned();
    let subcommand = command
        .find_subcommand(&subcommand_name)
        .expect("the subcommand was found in the arguments");
    let display = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigFileError::Read {
        path: display.clone(),
        reason: error.to_string(),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| ConfigFileError::Invalid {
            path: display.clone(),
            reason: error.message().to_owned(),
        })?;
    let invalid = |reason: String| ConfigFileError::Invalid {
        path: display.clone(),
        reason,
    };

    let given_flags: BTreeSet<String> = args[subcommand_at + 1..]
        .iter()
        .filter_map(|arg| arg.to_str())
        .filter_map(|arg| arg.strip_prefix("--"))
        .map(|arg| arg.split('=').next().unwrap_or(arg).to_owned())
        .collect();
    let mut added = Vec::new();
    let mut from_file = BTreeSet::new();
    let mut namespaces = Vec::new();
    for (name, value) in &table {
        if name == NAMESPACES_TABLE {
            namespaces = namespace_sections(value).map_err(invalid)?;
            continue;
        }
        let Some(arg) = subcommand
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name.as_str()) && name != CONFIG_FLAG)
        else {
            return Err(invalid(format!(
                "unknown setting {name:?}: settings are the long flag names of `{subcommand_name}`"
            )));
        };
        let env_given = arg
            .get_env()
            .into_iter()
            .map(|env| env.to_string_lossy().into_owned())
            .chain(
                FALLBACK_ENV
                    .iter()
                    .filter(|(setting, _)| setting == name)
                    .map(|(_, env)| (*env).to_owned()),
            )
            .any(|env| std::env::var_os(env).is_some_and(|value| !value.is_empty()));
        if given_flags.contains(name) || env_given {
            continue;
        }
        let values = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| scalar(name, item))
                .collect::<Result<Vec<_>, _>>(),
            other => scalar(name, other).map(|value| vec![value]),
        }
        .map_err(invalid)?;
        match arg.get_action() {
            ArgAction::SetTrue => match values.as_slice() {
                [value] if value == "true" => added.push(OsString::from(format!("--{name}"))),
                [value] if value == "false" => {}
                _ => return Err(invalid(format!("{name} is a switch: true or false"))),
            },
            ArgAction::Append => added.extend(values.iter().map(|value| OsString::from(format!("--{name}={value}")))),
            _ => match values.as_slice() {
                [value] => added.push(OsString::from(format!("--{name}={value}"))),
                _ => return Err(invalid(format!("{name} takes one value, not a list"))),
            },
        }
        from_file.insert(arg.get_id().to_string());
    }
    let mut merged = args;
    merged.splice(subcommand_at + 1..subcommand_at + 1, added);
    Ok(WithFile {
        args: merged,
        from_file,
        path: Some(path),
        namespaces,
    })
}

/// Reads `[namespaces."NAME"]` sections: `key` (a list of `ID=SOURCE`, or bare ids of keys
/// defined elsewhere) and `kms-key` (a KMS key, alias or `{namespace}` template).
fn namespace_sections(value: &toml::Value) -> Result<Vec<SectionSpec>, String> {
    let toml::Value::Table(sections) = value else {
        return Err("namespaces must be a table of sections: [namespaces.\"NAME\"]".to_owned());
    };
    let mut specs = Vec::with_capacity(sections.len());
    for (pattern, section) in sections {
        let toml::Value::Table(settings) = section else {
            return Err(format!(
                "namespaces.{pattern} must be a section with key = [...] and/or kms-key = \"...\""
            ));
        };
        let mut spec = SectionSpec {
            pattern: pattern.clone(),
            keys: Vec::new(),
            kms_key: None,
        };
        for (name, setting) in settings {
            match (name.as_str(), setting) {
                ("key", toml::Value::String(key)) => spec.keys.push(key.clone()),
                ("key", toml::Value::Array(keys)) => {
                    for key in keys {
                        let toml::Value::String(key) = key else {
                            return Err(format!("namespaces.{pattern}.key must list strings: ID=SOURCE or ID"));
                        };
                        spec.keys.push(key.clone());
                    }
                }
                ("kms-key", toml::Value::String(key)) => spec.kms_key = Some(key.clone()),
                ("key" | "kms-key", _) => {
                    return Err(format!("namespaces.{pattern}.{name} must be a string"));
                }
                (other, _) => {
                    return Err(format!(
                        "namespaces.{pattern}: unknown setting {other:?}; a namespace section takes key and kms-key"
                    ));
                }
            }
        }
        specs.push(spec);
    }
    Ok(specs)
}

fn scalar(name: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(switch) => Ok(switch.to_string()),
        _ => Err(format!("{name} must be a string, number, boolean or a list of them")),
    }
}

/// The file named by `--config PATH`, `--config=PATH` or the environment.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let prefixed = format!("--{CONFIG_FLAG}=");
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == flag {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&prefixed) {
            return Some(Path::new(path).to_owned());
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}
