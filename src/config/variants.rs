//! The model's parameter sets: the default (`[model]`) and the named
//! variants (`[variants.NAME]`, each merged over `[model]`), validated and
//! versioned. A SIGHUP reload swaps them in whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{IngestParams, ModelParams};

/// A named, validated parameter set and the version string that identifies it.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// "" for the default.
    pub name: String,
    /// Effective parameters.
    pub params: ModelParams,
    /// Identifies the effective parameters (and the ingest parameters they read).
    pub model_version: String,
}

/// The default parameter set and the named variants.
#[derive(Clone, Debug)]
pub struct Variants {
    default: Arc<Variant>,
    named: BTreeMap<String, Arc<Variant>>,
}

impl Variants {
    /// The variant called `name` ("" = default), or `None` if unknown.
    pub fn get(&self, name: &str) -> Option<&Arc<Variant>> {
        if name.is_empty() {
            Some(&self.default)
        } else {
            self.named.get(name)
        }
    }

    /// The default variant.
    pub fn default_variant(&self) -> &Arc<Variant> {
        &self.default
    }

    /// Names of the named variants.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }
}

/// Why a parameter set was refused.
pub(super) enum VariantError {
    Parse(String),
    Invalid(String),
}

/// The default parameter set and the named variants merged over it.
pub(super) fn build_variants(
    model: &toml::Table,
    named: &BTreeMap<String, toml::Table>,
    ingest: &IngestParams,
) -> Result<Variants, VariantError> {
    let default = make_variant("", model, ingest)?;
    let mut variants = BTreeMap::new();
    for (name, overrides) in named {
        if name.is_empty() || name.len() > 64 {
            return Err(VariantError::Invalid(format!(
                "variant name `{name}` must be 1 to 64 characters"
            )));
        }
        let mut merged = model.clone();
        merge(&mut merged, overrides);
        variants.insert(name.clone(), Arc::new(make_variant(name, &merged, ingest)?));
    }
    Ok(Variants {
        default: Arc::new(default),
        named: variants,
    })
}

fn make_variant(name: &str, table: &toml::Table, ingest: &IngestParams) -> Result<Variant, VariantError> {
    let section = if name.is_empty() {
        "model".to_owned()
    } else {
        format!("variants.{name}")
    };
    let params: ModelParams = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| VariantError::Parse(format!("[{section}]: {}", e.message())))?;
    params
        .validate()
        .map_err(|e| VariantError::Invalid(format!("[{section}] {e}")))?;
    let model_version = model_version(&params, ingest);
    Ok(Variant {
        name: name.to_owned(),
        params,
        model_version,
    })
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(base: &mut toml::Table, overrides: &toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(override_table)) => {
                merge(base_table, override_table);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `cb1-` and a 64-bit FNV-1a hash of the effective parameters, printed with
/// full float precision: equal parameters give equal versions on every replica.
fn model_version(params: &ModelParams, ingest: &IngestParams) -> String {
    let canonical = format!("{params:?}|{ingest:?}");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cb1-{hash:016x}")
}
