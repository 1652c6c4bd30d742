//! The one list of settings. Each `settings!` entry declares a setting once —
//! its name, type, default, command-line flag, environment variable and doc
//! line — and the macro derives from it: the typed table read from the file
//! (its key is the field's name in its `[section]`), the `serve` flags and
//! environment variables (which win over the file), and the reference table
//! in docs/configuration.md (a test keeps the page equal to it).
//!
//! Everything declared here needs a restart to change; what a SIGHUP reload
//! applies is the model and its variants (see [`crate::service::reload`]).

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
/// under `Settings / Flags, section "file table", heading "help heading"`.
macro_rules! settings {
    (
        $(#[doc = $struct_doc:literal])*
        $Settings:ident / $Flags:ident, section $section:literal, heading $heading:literal {
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
        #[command(next_help_heading = $heading)]
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
