//! fields: the keys firetail adds to every JSON line it ships — `--add-field KEY=VALUE`,
//! `--source-field KEY` and `--file-field KEY` — each key valid and all distinct, so no
//! line gets one key twice from firetail.

use super::values::{Given, Origin};
use super::ConfigError;

const KEY_MAX: usize = 64;
const KEY_RULE: &str = "[A-Za-z_][A-Za-z0-9_.-]{0,63}";

/// The added fields, in the order given, and the two optional keys.
pub(super) struct Fields {
    pub add: Vec<(String, String)>,
    pub source: Option<String>,
    pub file: Option<String>,
}

pub(super) fn from_given(given: &Given) -> Result<Fields, ConfigError> {
    let mut add: Vec<(String, String)> = Vec::new();
    let mut keys: Vec<(String, Origin)> = Vec::new();
    if let Some((items, origin)) = given.list("add_field", ',')? {
        for (_, item) in items {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| origin.bad(format!("{item:?} is not KEY=VALUE (e.g. env=prod)")))?;
            let key = key.trim();
            check_key(key, &origin, &keys)?;
            keys.push((key.to_string(), origin.clone()));
            add.push((key.to_string(), value.to_string()));
        }
    }
    let mut one = |id: &str| -> Result<Option<String>, ConfigError> {
        let Some((key, origin)) = given.text(id)? else {
            return Ok(None);
        };
        let key = key.trim().to_string();
        check_key(&key, &origin, &keys)?;
        keys.push((key.clone(), origin));
        Ok(Some(key))
    };
    let source = one("source_field")?;
    let file = one("file_field")?;
    Ok(Fields { add, source, file })
}

/// A key a JSON reader and a Firehose partitioning query can both take as is, and not
/// one already added.
fn check_key(key: &str, origin: &Origin, taken: &[(String, Origin)]) -> Result<(), ConfigError> {
    if let Some(problem) = key_problem(key) {
        return Err(origin.bad(problem));
    }
    match taken.iter().find(|(k, _)| k == key) {
        None => Ok(()),
        Some((_, first)) if first == origin => {
            Err(origin.bad(format!("key {key:?} is given twice")))
        }
        Some((_, first)) => Err(origin.bad(format!(
            "key {key:?} is already added by {}; every added key must be distinct",
            first.name()
        ))),
    }
}

fn key_problem(key: &str) -> Option<String> {
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (!(first_ok && rest_ok && key.len() <= KEY_MAX)).then(|| {
        format!(
            "key {key:?} is not a field key ({KEY_RULE}: a letter or '_', then letters, digits, '_', '.' and '-', at most {KEY_MAX})"
        )
    })
}
