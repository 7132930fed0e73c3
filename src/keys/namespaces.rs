//! Which keys belong to which namespace: the key that encrypts its payloads, and the only
//! keys its payloads are decrypted with.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::data_key::{DataKey, Keyring, KeyringError};
use super::static_keys::{KeySourceError, KeySpec};
use super::{KeySelector, NoNamespace};

/// One namespace's keys.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// The first encrypts when no provider key is set; all of them decrypt.
    static_keys: Keyring,
    provider_key: Option<KeySelector>,
    /// Unwrapping names the namespace's provider key, so the provider itself refuses a
    /// key wrapped under another. Off only for one fixed key shared by every namespace,
    /// which keeps payloads under earlier keys readable as the samples' codec does.
    binds_unwrap: bool,
}

impl KeySet {
    pub fn new(static_keys: Keyring, provider_key: Option<KeySelector>, binds_unwrap: bool) -> Self {
        Self {
            static_keys,
            provider_key,
            binds_unwrap,
        }
    }

    pub fn static_keys(&self) -> &Keyring {
        &self.static_keys
    }

    /// The provider key that encrypts `namespace`'s payloads, if a provider is used.
    pub fn provider_key(&self, namespace: &str) -> Option<Result<String, NoNamespace>> {
        self.provider_key
            .as_ref()
            .map(|selector| selector.key_for_namespace(namespace))
    }

    /// Which wrapped keys may be unwrapped for `namespace`'s payloads.
    pub fn unwrap_rule(&self, namespace: &str) -> UnwrapRule {
        match self.provider_key(namespace) {
            None => UnwrapRule::Refuse,
            Some(_) if !self.binds_unwrap => UnwrapRule::AnyKey,
            Some(Ok(key)) => UnwrapRule::Named(key),
            // A template with no namespace to fill in names no key, so nothing is unwrapped.
            Some(Err(NoNamespace)) => UnwrapRule::Refuse,
        }
    }

    /// Whether this set's payloads may be under a provider's key at all.
    pub fn uses_provider(&self) -> bool {
        self.provider_key.is_some()
    }
}

/// Which wrapped data keys a namespace's payloads may be unwrapped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapRule {
    /// None: the namespace uses no provider.
    Refuse,
    /// Whichever key wrapped it (one key shared by every namespace).
    AnyKey,
    /// Only a key wrapped under this provider key; the unwrap names it.
    Named(String),
}

/// A namespace name, or a pattern with `*` standing for any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePattern(String);

impl NamespacePattern {
    pub fn new(pattern: impl Into<String>) -> Self {
        Self(pattern.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    /// How much of the pattern is literal: the most specific matching pattern wins.
    fn specificity(&self) -> usize {
        self.0.chars().filter(|c| *c != '*').count()
    }

    pub fn matches(&self, namespace: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = namespace.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

/// Every namespace's keys: sections by name or pattern, and what namespaces outside them use.
#[derive(Debug, Clone)]
pub struct NamespaceKeys {
    /// Exact names first, then patterns from the most specific.
    sections: Vec<(NamespacePattern, Arc<KeySet>)>,
    /// Namespaces no section names: the keys given by flags, if any.
    others: Option<Arc<KeySet>>,
}

impl NamespaceKeys {
    /// The same keys for every namespace.
    pub fn shared(keys: KeySet) -> Self {
        Self {
            sections: Vec::new(),
            others: Some(Arc::new(keys)),
        }
    }

    pub fn new(sections: Vec<(NamespacePattern, KeySet)>, others: Option<KeySet>) -> Self {
        let mut sections: Vec<(NamespacePattern, Arc<KeySet>)> = sections
            .into_iter()
            .map(|(pattern, keys)| (pattern, Arc::new(keys)))
            .collect();
        sections.sort_by_key(|(pattern, _)| (!pattern.is_exact(), std::cmp::Reverse(pattern.specificity())));
        Self {
            sections,
            others: others.map(Arc::new),
        }
    }

    /// The keys of `namespace`, or `None` when it has none and must be refused.
    pub fn for_namespace(&self, namespace: &str) -> Option<&Arc<KeySet>> {
        self.sections
            .iter()
            .find(|(pattern, _)| pattern.matches(namespace))
            .map(|(_, keys)| keys)
            .or(self.others.as_ref())
    }

    /// Every key set, for what is counted across all of them.
    fn sets(&self) -> impl Iterator<Item = &Arc<KeySet>> {
        self.sections.iter().map(|(_, keys)| keys).chain(self.others.iter())
    }

    /// Every static key once, whichever sections share it.
    pub fn static_keys(&self) -> Vec<&DataKey> {
        let mut seen = std::collections::HashSet::new();
        self.sets()
            .flat_map(|set| set.static_keys.keys())
            .filter(|key| seen.insert(key.id().to_owned()))
            .collect()
    }

    /// Whether any namespace has a key to encrypt with.
    pub fn has_keys(&self) -> bool {
        self.sets()
            .any(|set| set.static_keys.active().is_some() || set.provider_key.is_some())
    }

    pub fn uses_provider(&self) -> bool {
        self.sets().any(|set| set.uses_provider())
    }

    /// Whether a static key with this id belongs to some namespace.
    pub fn holds_static_key(&self, id: &[u8]) -> bool {
        self.sets().any(|set| set.static_keys.get(id).is_some())
    }

    /// The table as `check-config` prints it; key ids and provider key names, never keys.
    pub fn describe(&self, provider: &str) -> String {
        let mut out = String::new();
        let describe_set = |set: &KeySet| {
            let mut parts = Vec::new();
            if let Some(selector) = &set.provider_key {
                let name = match selector {
                    KeySelector::Fixed(key) | KeySelector::Template(key) => key,
                };
                let binding = if set.binds_unwrap {
                    "unwraps name it"
                } else {
                    "unwraps any key"
                };
                parts.push(format!("encrypts with {provider} key {name} ({binding})"));
            }
            let mut ids: Vec<&str> = set.static_keys.ids().collect();
            ids.sort_unstable();
            if let Some(active) = set.static_keys.active() {
                let role = if set.provider_key.is_some() {
                    "decrypts with static keys"
                } else {
                    "encrypts with static key"
                };
                let others: Vec<&str> = ids.iter().copied().filter(|id| *id != active.id()).collect();
                if others.is_empty() || set.provider_key.is_some() {
                    parts.push(format!("{role} {}", ids.join(", ")));
                } else {
                    parts.push(format!("{role} {}, decrypts also {}", active.id(), others.join(", ")));
                }
            }
            parts.join("; ")
        };
        for (pattern, set) in &self.sections {
            let _ = writeln!(out, "#   {:<24} {}", pattern.as_str(), describe_set(set));
        }
        let others = match &self.others {
            Some(set) => describe_set(set),
            None => "refused (FAILED_PRECONDITION): no key".to_owned(),
        };
        let label = if self.sections.is_empty() {
            "every namespace"
        } else {
            "any other namespace"
        };
        let _ = writeln!(out, "#   {label:<24} {others}");
        out
    }
}

/// One `[namespaces."…"]` section of the configuration file, before its keys are loaded.
#[derive(Debug, Clone)]
pub struct SectionSpec {
    pub pattern: String,
    /// `ID=SOURCE` to define a key here, or a bare `ID` for a key defined elsewhere.
    pub keys: Vec<String>,
    pub kms_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceKeysError {
    #[error("namespace section {pattern:?}: {source}")]
    Key {
        pattern: String,
        #[source]
        source: KeySourceError,
    },
    #[error("namespace section {pattern:?} names key {id:?}, which no --key and no section defines")]
    UnknownKey { pattern: String, id: String },
    #[error("key {0:?} is defined more than once; define it once and name it by its id elsewhere")]
    DuplicateKey(String),
    #[error("namespace section {0:?} names no key: give it key = [\"ID=SOURCE\"] or kms-key")]
    Empty(String),
    #[error("namespace {0:?} has more than one section")]
    DuplicateSection(String),
    #[error("namespace section {0:?} is empty or has an empty part between * characters")]
    BadPattern(String),
}

/// Builds the table: every section's own keys are loaded, bare ids are resolved against
/// the keys that `--key` (given as `flag_keys`) and the sections define.
pub fn build_sections(
    specs: &[SectionSpec],
    flag_keys: &Keyring,
) -> Result<Vec<(NamespacePattern, KeySet)>, NamespaceKeysError> {
    let mut defined: HashMap<String, Arc<DataKey>> = flag_keys
        .ids()
        .filter_map(|id| flag_keys.shared(id).map(|key| (id.to_owned(), key)))
        .collect();
    for spec in specs {
        if spec.pattern.is_empty() || spec.pattern.contains("**") {
            return Err(NamespaceKeysError::BadPattern(spec.pattern.clone()));
        }
        for entry in spec.keys.iter().filter(|entry| entry.contains('=')) {
            let parsed = KeySpec::parse(entry).map_err(|source| NamespaceKeysError::Key {
                pattern: spec.pattern.clone(),
                source,
            })?;
            let material = parsed.load().map_err(|source| NamespaceKeysError::Key {
                pattern: spec.pattern.clone(),
                source,
            })?;
            let key = DataKey::new(parsed.id.clone(), &material).map_err(|error| NamespaceKeysError::Key {
                pattern: spec.pattern.clone(),
                source: KeySourceError::Keyring(error),
            })?;
            if defined.insert(parsed.id.clone(), Arc::new(key)).is_some() {
                return Err(NamespaceKeysError::DuplicateKey(parsed.id));
            }
        }
    }
    let mut sections = Vec::with_capacity(specs.len());
    let mut patterns = std::collections::HashSet::new();
    for spec in specs {
        if !patterns.insert(spec.pattern.clone()) {
            return Err(NamespaceKeysError::DuplicateSection(spec.pattern.clone()));
        }
        let mut keys = Vec::with_capacity(spec.keys.len());
        for entry in &spec.keys {
            let id = entry.split_once('=').map_or(entry.as_str(), |(id, _)| id);
            let key = defined.get(id).ok_or_else(|| NamespaceKeysError::UnknownKey {
                pattern: spec.pattern.clone(),
                id: id.to_owned(),
            })?;
            keys.push(Arc::clone(key));
        }
        if keys.is_empty() && spec.kms_key.is_none() {
            return Err(NamespaceKeysError::Empty(spec.pattern.clone()));
        }
        let static_keys = if keys.is_empty() {
            Keyring::empty()
        } else {
            Keyring::from_shared(keys).map_err(|error: KeyringError| NamespaceKeysError::Key {
                pattern: spec.pattern.clone(),
                source: KeySourceError::Keyring(error),
            })?
        };
        let provider_key = spec.kms_key.clone().map(|key| {
            if key.contains("{namespace}") {
                KeySelector::Template(key)
            } else {
                KeySelector::Fixed(key)
            }
        });
        sections.push((
            NamespacePattern::new(spec.pattern.clone()),
            KeySet::new(static_keys, provider_key, true),
        ));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;

    fn keyring(ids: &[&str]) -> Keyring {
        Keyring::new(
            ids.iter()
                .map(|id| (id.to_string(), Zeroizing::new(vec![id.len() as u8; 32]))),
        )
        .unwrap()
    }

    #[test]
    fn patterns_match_as_globs() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "orders-eu", false),
            ("orders-*", "orders-eu", true),
            ("orders-*", "orders-", true),
            ("orders-*", "orders", false),
            ("*-prod", "payments-prod", true),
            ("*-prod", "payments-prod-2", false),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*", "", true),
            ("*", "anything", true),
        ];
        for (pattern, namespace, expected) in cases {
            assert_eq!(
                NamespacePattern::new(pattern).matches(namespace),
                expected,
                "{pattern} ~ {namespace}"
            );
        }
    }

    #[test]
    fn exact_names_win_then_the_most_specific_pattern_then_the_flags() {
        let flags = keyring(&["flags"]);
        let specs = [
            SectionSpec {
                pattern: "orders-*".into(),
                keys: vec![format!("wide=hex:{}", "aa".repeat(32))],
                kms_key: None,
            },
            SectionSpec {
                pattern: "orders-eu-*".into(),
                keys: vec![format!("narrow=hex:{}", "bb".repeat(32))],
                kms_key: None,
            },
            SectionSpec {
                pattern: "orders-eu-1".into(),
                keys: vec!["exact=hex:".to_owned() + &"11".repeat(32), "flags".into()],
                kms_key: None,
            },
        ];
        let table = NamespaceKeys::new(
            build_sections(&specs, &flags).unwrap(),
            Some(KeySet::new(flags.clone(), None, false)),
        );
        let active = |namespace: &str| {
            table
                .for_namespace(namespace)
                .and_then(|set| set.static_keys().active().map(|key| key.id().to_owned()))
        };
        assert_eq!(active("orders-eu-1").as_deref(), Some("exact"));
        assert_eq!(active("orders-eu-2").as_deref(), Some("narrow"));
        assert_eq!(active("orders-us").as_deref(), Some("wide"));
        assert_eq!(active("billing").as_deref(), Some("flags"));
        let exact = table.for_namespace("orders-eu-1").unwrap();
        assert!(
            exact.static_keys().get(b"flags").is_some(),
            "a bare id names a --key key"
        );
        assert!(
            table
                .for_namespace("orders-us")
                .unwrap()
                .static_keys()
                .get(b"exact")
                .is_none()
        );
        assert_eq!(table.static_keys().len(), 4);

        let strict = NamespaceKeys::new(build_sections(&specs, &flags).unwrap(), None);
        assert!(strict.for_namespace("billing").is_none());
        assert!(strict.describe("aws-kms").contains("refused"));
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let flags = keyring(&["flags"]);
        let section = |pattern: &str, keys: &[&str], kms_key: Option<&str>| SectionSpec {
            pattern: pattern.to_owned(),
            keys: keys.iter().map(|key| key.to_string()).collect(),
            kms_key: kms_key.map(str::to_owned),
        };
        let inline = format!("a=base64:{}", "A".repeat(43) + "=");
        let cases: Vec<(Vec<SectionSpec>, &str)> = vec![
            (vec![section("orders", &["missing"], None)], "no --key and no section"),
            (vec![section("orders", &[], None)], "names no key"),
            (
                vec![section("a", &[&inline], None), section("b", &[&inline], None)],
                "more than once",
            ),
            (
                vec![section("orders", &[&format!("flags=hex:{}", "22".repeat(32))], None)],
                "more than once",
            ),
            (
                vec![section("x", &["flags"], None), section("x", &["flags"], None)],
                "more than one section",
            ),
            (vec![section("", &["flags"], None)], "empty"),
        ];
        for (specs, expected) in cases {
            let error = build_sections(&specs, &flags).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let provider_only = build_sections(&[section("p-*", &[], Some("alias/{namespace}"))], &flags).unwrap();
        let table = NamespaceKeys::new(provider_only, None);
        let set = table.for_namespace("p-1").unwrap();
        assert_eq!(set.unwrap_rule("p-1"), UnwrapRule::Named("alias/p-1".to_owned()));
        assert_eq!(set.unwrap_rule(""), UnwrapRule::Refuse);
    }
}
