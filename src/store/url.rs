//! The shared store's address, parsed once when the config is loaded.

use std::fmt;
use std::str::FromStr;

use ::redis::{ConnectionInfo, IntoConnectionInfo, RedisError};

/// Where the shared store lives (`--store`, `store =`), parsed once at load.
///
/// Its `Display` and `Debug` replace any `USER:PASSWORD@` part with `***@`,
/// so logging it, or the config holding it, cannot leak a password.
#[derive(Clone)]
pub struct StoreUrl {
    /// As given, credentials included: compared on reload, never shown.
    given: String,
    target: RedisTarget,
}

/// What the Redis backend connects to.
#[derive(Clone)]
pub(crate) enum RedisTarget {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]`: one server.
    Server(ConnectionInfo),
    /// `redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]`: the seed
    /// nodes of a cluster, each with the credentials given once at the front.
    Cluster(Vec<ConnectionInfo>),
}

/// Why a store URL was refused. Every URL it shows is redacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// Neither `redis://` nor `redis-cluster://`.
    #[error("`{0}` is neither redis://HOST:PORT[/DB] nor redis-cluster://HOST:PORT[,HOST:PORT...]")]
    Scheme(String),
    /// `redis-cluster://` without a host.
    #[error("no seed nodes in `{0}`")]
    NoSeeds(String),
    /// The Redis client cannot use it (bad host, port or database number).
    #[error("`{url}` is not a usable Redis URL: {source}")]
    Invalid {
        /// The URL, redacted.
        url: String,
        /// What the Redis client objected to.
        #[source]
        source: RedisError,
    },
}

impl StoreUrl {
    /// What the Redis backend connects to.
    pub(crate) fn target(&self) -> &RedisTarget {
        &self.target
    }
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(given: &str) -> Result<StoreUrl, StoreUrlError> {
        let invalid = |source| StoreUrlError::Invalid {
            url: redact(given),
            source,
        };
        let target = if let Some(seeds) = given.strip_prefix("redis-cluster://") {
            let nodes = cluster_seeds(seeds);
            if nodes.is_empty() {
                return Err(StoreUrlError::NoSeeds(redact(given)));
            }
            let nodes = nodes.into_iter().map(IntoConnectionInfo::into_connection_info);
            RedisTarget::Cluster(nodes.collect::<Result<_, _>>().map_err(invalid)?)
        } else if given.starts_with("redis://") {
            RedisTarget::Server(given.into_connection_info().map_err(invalid)?)
        } else {
            return Err(StoreUrlError::Scheme(redact(given)));
        };
        Ok(StoreUrl {
            given: given.to_owned(),
            target,
        })
    }
}

impl PartialEq for StoreUrl {
    fn eq(&self, other: &StoreUrl) -> bool {
        self.given == other.given
    }
}

impl Eq for StoreUrl {}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.given))
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// The seed nodes of `redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]`
/// as `redis://` URLs, each with the credentials given once at the front.
fn cluster_seeds(seeds: &str) -> Vec<String> {
    let seeds = seeds.trim_end_matches('/');
    let (credentials, hosts) = match seeds.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), seeds),
    };
    hosts
        .split(',')
        .filter(|node| !node.is_empty())
        .map(|node| format!("redis://{credentials}{node}"))
        .collect()
}

/// A store URL fit for logs: any `USER:PASSWORD@` part replaced by `***@`.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_seeds_carry_the_credentials_and_logs_do_not() {
        assert_eq!(
            cluster_seeds("u:p@10.0.0.1:7000,10.0.0.2:7000/"),
            vec!["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7000"]
        );
        assert_eq!(cluster_seeds("h:1,,h:2"), vec!["redis://h:1", "redis://h:2"]);
        assert_eq!(redact("redis://:secret@h:6379/2"), "redis://***@h:6379/2");
        assert_eq!(redact("redis-cluster://u:p@h:1,h:2"), "redis-cluster://***@h:1,h:2");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn urls_parse_once_and_never_show_a_password() {
        let url: StoreUrl = "redis://:secret@h:6379/2".parse().expect("valid");
        assert_eq!(url.to_string(), "redis://***@h:6379/2");
        assert!(!format!("{url:?}").contains("secret"));
        let RedisTarget::Server(info) = url.target() else {
            panic!("one server");
        };
        assert_eq!(
            (info.redis_settings().password(), info.redis_settings().db()),
            (Some("secret"), 2)
        );

        let cluster: StoreUrl = "redis-cluster://u:p@h:1,h:2".parse().expect("valid");
        assert_eq!(cluster.to_string(), "redis-cluster://***@h:1,h:2");
        let RedisTarget::Cluster(nodes) = cluster.target() else {
            panic!("a cluster");
        };
        assert_eq!(nodes.len(), 2);
        assert!(nodes.iter().all(|node| node.redis_settings().username() == Some("u")));

        for (given, refused) in [
            ("http://u:secret@h:1", "neither"),
            ("redis-cluster://u:secret@", "no seed nodes"),
            ("redis://u:secret@h:1/notadb", "not a usable"),
        ] {
            let message = given.parse::<StoreUrl>().map(|_| ()).expect_err(given).to_string();
            assert!(message.contains(refused) && !message.contains("secret"), "{message}");
        }
    }
}
