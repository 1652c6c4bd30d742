//! One connection type over a single server and a cluster.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, FromRedisValue, RedisError, Script};
use futures_util::future::try_join_all;

use crate::store::url::RedisTarget;
use crate::store::{Operation, StoreError};

/// A multiplexed connection to one server or to a cluster; clones share it.
#[derive(Clone)]
pub(super) enum Connection {
    /// One server, reconnecting on failure.
    Single(ConnectionManager),
    /// A cluster, each command sent to the node of its slot.
    Cluster(Arc<Cluster>),
}

/// A cluster connection that can be rebuilt whole: the client library's own
/// reconnection was seen to leave a restarted master unreachable for good,
/// so a failed probe replaces the connection ([`Connection::reconnect`]).
pub(super) struct Cluster {
    client: ClusterClient,
    connect_timeout: Duration,
    current: RwLock<ClusterConnection>,
}

impl Cluster {
    async fn connect(client: &ClusterClient, connect_timeout: Duration) -> Result<ClusterConnection, StoreError> {
        tokio::time::timeout(connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| StoreError::Timeout {
                operation: Operation::Connect,
                limit: connect_timeout,
            })?
            .map_err(StoreError::redis)
    }

    fn current(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Connection {
    /// Connects to `target`, giving up after `connect_timeout`; every
    /// answer must come within `response_timeout`.
    ///
    /// # Errors
    /// [`StoreError::Redis`] or [`StoreError::Timeout`] when it cannot be reached.
    pub(super) async fn open(
        target: &RedisTarget,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Connection, StoreError> {
        match target {
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(2)
                    .build()
                    .map_err(StoreError::redis)?;
                let connection = Cluster::connect(&client, connect_timeout).await?;
                Ok(Connection::Cluster(Arc::new(Cluster {
                    client,
                    connect_timeout,
                    current: RwLock::new(connection),
                })))
            }
            RedisTarget::Server(server) => {
                let client = ::redis::Client::open(server.clone()).map_err(StoreError::redis)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let connection = ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(StoreError::redis)?;
                Ok(Connection::Single(connection))
            }
        }
    }

    /// Replaces a cluster connection with a fresh one to every node (a
    /// single server's connection manager reconnects by itself).
    ///
    /// # Errors
    /// [`StoreError`] when the cluster cannot be reached; the old connection stays.
    pub(super) async fn reconnect(&self) -> Result<(), StoreError> {
        if let Connection::Cluster(cluster) = self {
            let fresh = Cluster::connect(&cluster.client, cluster.connect_timeout).await?;
            *cluster
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        }
        Ok(())
    }

    /// Whether this is a cluster (a script may then touch one hash slot only).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connection::Cluster(_))
    }

    /// Sends one command.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match self {
            Connection::Single(connection) => cmd.query_async(&mut connection.clone()).await,
            Connection::Cluster(cluster) => cmd.query_async(&mut cluster.current()).await,
        }
    }

    /// Sends `cmds` at once: one pipeline to a single server; to a cluster,
    /// each command to its node, all in flight together.
    pub(super) async fn query_all<T: FromRedisValue>(&self, cmds: &[Cmd]) -> Result<Vec<T>, RedisError> {
        match self {
            Connection::Single(connection) => {
                let mut pipeline = ::redis::pipe();
                for cmd in cmds {
                    pipeline.add_command(cmd.clone());
                }
                pipeline.query_async(&mut connection.clone()).await
            }
            Connection::Cluster(cluster) => {
                let connection = cluster.current();
                try_join_all(cmds.iter().map(|cmd| {
                    let mut connection = connection.clone();
                    async move { cmd.query_async(&mut connection).await }
                }))
                .await
            }
        }
    }

    /// Runs `script` (loading it on a node that does not know it yet).
    /// Arguments are bytes: a viewer record is binary, and Lua strings are
    /// binary-safe.
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Vec<u8>],
    ) -> Result<T, RedisError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        match self {
            Connection::Single(connection) => invocation.invoke_async(&mut connection.clone()).await,
            Connection::Cluster(cluster) => invocation.invoke_async(&mut cluster.current()).await,
        }
    }
}
