//! The runner of the test binaries whose tests need something from outside
//! the repository: redis-server, a Kafka broker, the operations tools, the
//! KuaiRand log in `../shared`, a tmpfs. A [`libtest_mimic`] harness
//! (`harness = false` for those binaries in Cargo.toml) that looks and
//! behaves like the built-in one, except that a test whose need is missing
//! here is reported as `ignored (REASON)` and counted in the summary's
//! "ignored", instead of passing after a notice nobody sees. When the need's
//! `CREATOR_BOOST_REQUIRE_*` variable is `1` (`.ci/run` sets them) the test
//! fails instead.
//!
//! A binary lists its tests in `main` with [`trial!`](crate::trial) and hands
//! them to [`run`]:
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     harness::run(vec![
//!         trial!(plain_test),                      // as #[test]
//!         trial!(async async_test),                // as #[tokio::test]
//!         trial!(async needs_redis).needs([Redis]),
//!         trial!(async two_workers).multi_thread(2), // flavor = "multi_thread"
//!     ])
//! }
//! ```
//!
//! Unlike the built-in harness it does not capture what a test prints.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Completion, Trial};

/// Something a test needs that a machine may not have.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// `redis-server` on the PATH (the tests start their own servers).
    Redis,
    /// A tansu Kafka-protocol broker (see [`super::kafka::tansu`]).
    Kafka,
    /// An external program (the operations tools of `tests/deploy.rs`, `prlimit`).
    Tool(Tool),
    /// The KuaiRand log (see [`kuairand_log`]).
    KuaiRand,
    /// Mounting a small tmpfs (root with the right to mount).
    Tmpfs,
    /// Linux's `/proc` (a process's memory read from `/proc/PID/status`).
    Procfs,
}

/// An external program: the command that must succeed where it is
/// installed, how to install it, and the variable that requires it.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    pub program: &'static str,
    pub args: &'static [&'static str],
    pub install: &'static str,
    pub required_by: Option<&'static str>,
}

impl Need {
    /// `None` when the need is met here, else why not.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Redis => (!super::redis::installed())
                .then(|| "redis-server not installed (apt-get install -y redis-server)".to_owned()),
            Need::Kafka => super::kafka::tansu().is_none().then(|| {
                "no tansu Kafka broker: set CREATOR_BOOST_TANSU, or put it in ../shared/tools/tansu/ or on the PATH"
                    .to_owned()
            }),
            Need::Tool(tool) => (!runs(tool.program, tool.args)).then(|| {
                format!(
                    "`{} {}` did not run ({})",
                    tool.program,
                    tool.args.join(" "),
                    tool.install
                )
            }),
            Need::KuaiRand => {
                let path = kuairand_log();
                (!path.exists()).then(|| {
                    format!(
                        "KuaiRand log not found at {} (set CREATOR_BOOST_KUAIRAND)",
                        path.display()
                    )
                })
            }
            Need::Tmpfs => (!can_mount_tmpfs()).then(|| "cannot mount a tmpfs here (needs root)".to_owned()),
            Need::Procfs => (!Path::new("/proc/self/status").exists()).then(|| "no /proc here".to_owned()),
        }
    }

    /// The variable that, set to `1`, turns this need's absence into a failure.
    pub fn required_by(self) -> Option<&'static str> {
        match self {
            Need::Redis => Some("CREATOR_BOOST_REQUIRE_REDIS"),
            Need::Kafka => Some("CREATOR_BOOST_REQUIRE_KAFKA"),
            Need::Tool(tool) => tool.required_by,
            Need::KuaiRand => Some("CREATOR_BOOST_REQUIRE_KUAIRAND"),
            Need::Tmpfs | Need::Procfs => None,
        }
    }
}

/// The KuaiRand standard log: `$CREATOR_BOOST_KUAIRAND`, else
/// `../shared/data/kuairand-pure/` beside the checkout.
pub fn kuairand_log() -> PathBuf {
    std::env::var_os("CREATOR_BOOST_KUAIRAND")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/kuairand-pure/log_standard_20220425_20220508_with_author.csv.gz")
        })
}

/// Whether `program args` runs and succeeds.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Mounts and unmounts a 1 MiB tmpfs in a temporary directory.
fn can_mount_tmpfs() -> bool {
    let Ok(temp) = tempfile::tempdir() else {
        return false;
    };
    let mounted = runs(
        "mount",
        &["-t", "tmpfs", "-o", "size=1m", "tmpfs", &temp.path().to_string_lossy()],
    );
    if mounted {
        runs("umount", &[&temp.path().to_string_lossy()]);
    }
    mounted
}

/// How a test's body runs.
enum Body {
    /// A plain function, as `#[test]`.
    Plain(Box<dyn FnOnce() + Send>),
    /// A future, on a runtime of its own made when the test starts.
    Async(Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>),
}

/// One test of a binary: its name, what it needs, its body.
pub struct Test {
    name: String,
    needs: Vec<Need>,
    /// Worker threads of a multi-thread runtime; `None` = current-thread.
    workers: Option<usize>,
    body: Body,
}

impl Test {
    /// A plain test, as `#[test]`.
    pub fn plain(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Test {
        Test {
            name: name.into(),
            needs: Vec::new(),
            workers: None,
            body: Body::Plain(Box::new(body)),
        }
    }

    /// An async test on a current-thread runtime, as `#[tokio::test]`.
    pub fn tokio<B, F>(name: impl Into<String>, body: B) -> Test
    where
        B: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()>,
    {
        Test {
            name: name.into(),
            needs: Vec::new(),
            workers: None,
            body: Body::Async(Box::new(move |runtime| runtime.block_on(body()))),
        }
    }

    /// Runs the async body on a multi-thread runtime with `workers` threads,
    /// as `#[tokio::test(flavor = "multi_thread", worker_threads = N)]`.
    pub fn multi_thread(mut self, workers: usize) -> Test {
        self.workers = Some(workers);
        self
    }

    /// Adds what the test needs; without it the test is ignored (or fails, when required).
    pub fn needs(mut self, needs: impl IntoIterator<Item = Need>) -> Test {
        self.needs.extend(needs);
        self
    }

    fn into_trial(self) -> Trial {
        let Test {
            name,
            needs,
            workers,
            body,
        } = self;
        Trial::ignorable_test(name, move || {
            for need in needs {
                let Some(reason) = need.missing() else {
                    continue;
                };
                return match need.required_by() {
                    Some(var) if std::env::var(var).as_deref() == Ok("1") => {
                        Err(format!("required by {var}=1 but missing: {reason}").into())
                    }
                    _ => Ok(Completion::ignored_with(reason)),
                };
            }
            match body {
                Body::Plain(body) => body(),
                Body::Async(body) => {
                    let mut builder = match workers {
                        Some(workers) => {
                            let mut builder = tokio::runtime::Builder::new_multi_thread();
                            builder.worker_threads(workers);
                            builder
                        }
                        None => tokio::runtime::Builder::new_current_thread(),
                    };
                    let runtime = builder.enable_all().build().expect("test runtime");
                    body(&runtime);
                }
            }
            Ok(Completion::Completed)
        })
    }
}

/// Runs `tests` as the command line asks (filters, `--list`, `--test-threads`
/// …, as the built-in harness) and prints the summary; the exit code says
/// whether any failed.
pub fn run(tests: Vec<Test>) -> std::process::ExitCode {
    let arguments = Arguments::from_args();
    let trials = tests.into_iter().map(Test::into_trial).collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}

/// A [`Test`] named after the function: `trial!(name)` for a plain `fn()`,
/// `trial!(async name)` for an `async fn()` (on a current-thread runtime).
#[macro_export]
macro_rules! trial {
    (async $name:ident) => {
        $crate::common::harness::Test::tokio(stringify!($name), $name)
    };
    ($name:ident) => {
        $crate::common::harness::Test::plain(stringify!($name), $name)
    };
}
