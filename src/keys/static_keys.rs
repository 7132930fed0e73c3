//! Static keys from `ID=SOURCE` specifications: inline, from a file or from the environment.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::data_key::{KEY_BYTES, Keyring, KeyringError};

/// Where one key's 32 bytes come from. Never printed: it may hold the key itself.
pub enum KeySource {
    Base64(Zeroizing<String>),
    Hex(Zeroizing<String>),
    File(PathBuf),
    Env(String),
}

/// One `--key ID=SOURCE` argument.
pub struct KeySpec {
    pub id: String,
    pub source: KeySource,
}

/// Errors name the key id and the problem, never the key material.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    #[error("key specification must be ID=SOURCE with SOURCE one of base64:…, hex:…, file:PATH, env:VAR")]
    Syntax,
    #[error("key {id:?}: unknown source kind {kind:?}; use base64:…, hex:…, file:PATH or env:VAR")]
    UnknownKind { id: String, kind: String },
    #[error("key {id:?}: {what} is not valid {encoding}")]
    Encoding {
        id: String,
        what: String,
        encoding: &'static str,
    },
    #[error("key {id:?}: cannot read {path}: {error}")]
    File {
        id: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("key {id:?}: environment variable {var} is not set")]
    MissingEnv { id: String, var: String },
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

impl KeySpec {
    pub fn parse(spec: &str) -> Result<Self, KeySourceError> {
        let (id, source) = spec.split_once('=').ok_or(KeySourceError::Syntax)?;
        let (kind, value) = source.split_once(':').ok_or(KeySourceError::Syntax)?;
        let source = match kind {
            "base64" => KeySource::Base64(Zeroizing::new(value.to_owned())),
            "hex" => KeySource::Hex(Zeroizing::new(value.to_owned())),
            "file" => KeySource::File(PathBuf::from(value)),
            "env" => KeySource::Env(value.to_owned()),
            other => {
                return Err(KeySourceError::UnknownKind {
                    id: id.to_owned(),
                    kind: other.to_owned(),
                });
            }
        };
        Ok(Self {
            id: id.to_owned(),
            source,
        })
    }

    /// Reads the key's bytes from its source.
    pub fn load(&self) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
        let id = &self.id;
        match &self.source {
            KeySource::Base64(text) => decode_base64(id, "the base64 value", text),
            KeySource::Hex(text) => decode_hex(id, "the hex value", text),
            KeySource::Env(var) => {
                let text = Zeroizing::new(std::env::var(var).map_err(|_| KeySourceError::MissingEnv {
                    id: id.clone(),
                    var: var.clone(),
                })?);
                decode_text(id, &format!("environment variable {var}"), &text)
            }
            KeySource::File(path) => {
                let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| KeySourceError::File {
                    id: id.clone(),
                    path: path.clone(),
                    error,
                })?);
                // A file holds either the raw 32 bytes or their text form.
                if bytes.len() == KEY_BYTES {
                    return Ok(Zeroizing::new(bytes.to_vec()));
                }
                let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
                decode_text(id, &format!("file {}", path.display()), &text)
            }
        }
    }
}

/// Text key material: `base64:…`, `hex:…`, or bare base64.
fn decode_text(id: &str, what: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
    let text = text.trim();
    match text.split_once(':') {
        Some(("hex", value)) => decode_hex(id, what, value),
        Some(("base64", value)) => decode_base64(id, what, value),
        _ => decode_base64(id, what, text),
    }
}

fn decode_base64(id: &str, what: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
    STANDARD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| KeySourceError::Encoding {
            id: id.to_owned(),
            what: what.to_owned(),
            encoding: "base64",
        })
}

fn decode_hex(id: &str, what: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
    hex::decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|_| KeySourceError::Encoding {
            id: id.to_owned(),
            what: what.to_owned(),
            encoding: "hex",
        })
}

/// Builds the keyring from `--key` arguments; the first one is the active key.
pub fn load_keyring(specs: &[String]) -> Result<Keyring, KeySourceError> {
    let mut keys = Vec::with_capacity(specs.len());
    for spec in specs {
        let spec = KeySpec::parse(spec)?;
        let material = spec.load()?;
        keys.push((spec.id, material));
    }
    Ok(Keyring::new(keys)?)
}

/// A new random key as a SOURCE string (`base64:…`).
pub fn generate_key_source() -> Result<Zeroizing<String>, KeySourceError> {
    let mut material = Zeroizing::new([0u8; KEY_BYTES]);
    aws_lc_rs::rand::fill(&mut material[..]).map_err(|_| KeySourceError::Random)?;
    Ok(Zeroizing::new(format!("base64:{}", STANDARD.encode(&material[..]))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LW11c3Qtbm90LWxlYWs=";

    #[test]
    fn loads_every_source_kind_to_the_same_key() {
        let key = [0x42u8; KEY_BYTES];
        let dir = std::env::temp_dir().join(format!("tcp-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("raw.key"), key).unwrap();
        std::fs::write(dir.join("text.key"), format!("{}\n", STANDARD.encode(key))).unwrap();
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("TCP_TEST_KEY_VAR", format!("hex:{}", hex::encode(key))) };
        let specs = [
            format!("a=base64:{}", STANDARD.encode(key)),
            format!("b=hex:{}", hex::encode(key)),
            format!("c=file:{}", dir.join("raw.key").display()),
            format!("d=file:{}", dir.join("text.key").display()),
            "e=env:TCP_TEST_KEY_VAR".to_owned(),
        ];
        for spec in &specs {
            let parsed = KeySpec::parse(spec).unwrap();
            assert_eq!(&parsed.load().unwrap()[..], &key[..], "{spec}");
        }
        let keyring = load_keyring(&specs).unwrap();
        assert_eq!(keyring.active().unwrap().id(), "a");
        assert_eq!(keyring.ids().count(), 5);
    }

    #[test]
    fn errors_name_the_key_id_but_never_the_material() {
        let cases = [
            format!("prod=base64:{SECRET}!!"),
            format!("prod=hex:{SECRET}"),
            format!("prod=base64:{SECRET}"),
            format!("prod=rot13:{SECRET}"),
            format!("prod{SECRET}"),
        ];
        for spec in &cases {
            let error = load_keyring(std::slice::from_ref(spec)).unwrap_err().to_string();
            assert!(!error.contains(SECRET), "{error}");
            assert!(!error.contains("c2VjcmV0"), "{error}");
        }
        let error = load_keyring(&[format!("prod=base64:{SECRET}")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("prod") && error.contains("32 bytes"), "{error}");
        let missing = load_keyring(&["prod=env:TCP_TEST_UNSET_VARIABLE".to_owned()]).unwrap_err();
        assert!(missing.to_string().contains("TCP_TEST_UNSET_VARIABLE"));
        let duplicate = format!("a=base64:{}", STANDARD.encode([1u8; KEY_BYTES]));
        assert!(matches!(
            load_keyring(&[duplicate.clone(), duplicate]),
            Err(KeySourceError::Keyring(KeyringError::DuplicateId(_)))
        ));
        assert!(matches!(
            load_keyring(&[]),
            Err(KeySourceError::Keyring(KeyringError::NoKeys))
        ));
    }

    #[test]
    fn generated_keys_load() {
        let source = generate_key_source().unwrap();
        let keyring = load_keyring(&[format!("new={}", source.as_str())]).unwrap();
        assert_eq!(keyring.active().unwrap().id(), "new");
    }
}
