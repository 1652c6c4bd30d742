//! The one list of settings. Each `settings!` entry declares a setting once —
//! its name, type, default, command-line flag, environment variable and doc
//! line — and the macro derives from it: the typed table read from the file
//! (its key is the field's name in its `[section]`), the `serve` flags and
//! environment variables (which win over the file), and the reference table
//! in docs/configuration.md (a test keeps the page equal to it).
//!
//! Everything declared here needs a restart to change; what a SIGHUP reload
//! applies is the model and its variants (see [`crate::service::reload`]).

use std::fmt::Write as _;
use std::path::PathBuf;

/// One setting as the reference shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The file key, dotted with its section (`cache.viewers`).
    pub key: String,
    /// The `serve` flag, without its dashes.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The default, as it would be written in the file.
    pub default: String,
    /// What it sets.
    pub doc: String,
}

/// How a default reads in the reference.
pub trait Shown {
    /// The value as written in the file; "" = not set.
    fn shown(&self) -> String;
}

macro_rules! shown_by_display {
    ($($ty:ty),*) => {
        $(impl Shown for $ty {
            fn shown(&self) -> String {
                self.to_string()
            }
        })*
    };
}
shown_by_display!(bool, u32, u64, usize, String);

impl Shown for PathBuf {
    fn shown(&self) -> String {
        self.display().to_string()
    }
}

/// Declares a table of settings and derives its file table, its flags and
/// its reference rows. Each entry:
/// `/// doc` `name: Type = default, flag "name", env "VAR" [, arg(extra clap args)];`
macro_rules! settings {
    (
        $(#[doc = $struct_doc:literal])*
        $Settings:ident / $Flags:ident, section $section:literal {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty = $default:expr, flag $flag:literal, env $env:literal
                    $(, arg($($arg:tt)*))?;
            )*
        }
    ) => {
        $(#[doc = $struct_doc])*
        #[derive(Clone, Debug, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $Settings {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        impl Default for $Settings {
            fn default() -> Self {
                $Settings {
                    $($field: $default,)*
                }
            }
        }

        #[doc = concat!("The flags and environment variables of the `", $section, "` settings; those given win over the file.")]
        #[derive(Clone, Debug, Default, clap::Args)]
        pub struct $Flags {
            $(
                $(#[doc = $doc])*
                #[arg(long = $flag, env = $env $(, $($arg)*)?)]
                pub $field: Option<$ty>,
            )*
        }

        impl $Flags {
            /// Puts every flag given over `settings`.
            pub fn apply(&self, settings: &mut $Settings) {
                $(
                    if let Some(value) = &self.$field {
                        settings.$field = value.clone();
                    }
                )*
            }
        }

        impl $Settings {
            /// The reference rows of these settings, with their defaults.
            pub fn reference() -> Vec<$crate::config::settings::Setting> {
                use $crate::config::settings::Shown as _;
                let defaults = $Settings::default();
                vec![$(
                    $crate::config::settings::Setting {
                        key: $crate::config::settings::key($section, stringify!($field)),
                        flag: $flag,
                        env: $env,
                        default: defaults.$field.shown(),
                        doc: [$($doc),*].iter().map(|line| line.trim()).collect::<Vec<_>>().join(" "),
                    }
                ),*]
            }
        }
    };
}
pub(crate) use settings;

/// The file key of `field` in `section` ("" = the top level).
pub fn key(section: &str, field: &str) -> String {
    if section.is_empty() {
        field.to_owned()
    } else {
        format!("{section}.{field}")
    }
}

/// The reference table (Markdown) of every setting, in file order.
pub fn reference_table() -> String {
    let mut rows = super::sections::TopLevel::reference();
    rows.extend(super::sections::Limits::reference());
    rows.extend(super::sections::TransportConfig::reference());
    rows.extend(super::sections::CacheConfig::reference());
    rows.extend(super::sections::RedisConfig::reference());
    rows.extend(super::kafka::KafkaSettings::reference());
    let mut out =
        String::from("| file key | flag | environment variable | default | meaning |\n|---|---|---|---|---|\n");
    for row in rows {
        let default = if row.default.is_empty() {
            "(none)".to_owned()
        } else {
            format!("`{}`", row.default)
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| `{}` | `--{}` | `{}` | {} | {} |",
            row.key,
            row.flag,
            row.env,
            default,
            row.doc.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- settings:begin -->\n";
    const END: &str = "<!-- settings:end -->";

    /// docs/configuration.md shows exactly the settings declared here;
    /// `UPDATE_DOCS=1 cargo test --lib config` rewrites it.
    #[test]
    fn the_reference_page_matches_the_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let page = std::fs::read_to_string(path).expect("docs/configuration.md");
        let start = page.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = page.find(END).expect("end marker");
        let table = reference_table();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let fresh = format!("{}{table}{}", &page[..start], &page[end..]);
            std::fs::write(path, fresh).expect("write docs/configuration.md");
            return;
        }
        assert_eq!(
            page[start..end],
            table,
            "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test --lib config"
        );
    }

    #[test]
    fn every_flag_and_variable_is_unique() {
        let table = reference_table();
        let mut flags: Vec<&str> = table.lines().filter_map(|l| l.split('|').nth(2)).collect();
        let count = flags.len();
        flags.sort_unstable();
        flags.dedup();
        assert_eq!(flags.len(), count);
    }
}
