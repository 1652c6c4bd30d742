//! TLS done here rather than by tonic, so the certificate can change under a
//! running server: [`Certificates`] holds the rustls configuration built from
//! the PEM files, [`Certificates::reload`] builds a new one from the same
//! paths (on SIGHUP — cert-manager and the like rotate files in place) and
//! swaps it in only if the whole set is usable. Each new connection
//! handshakes with the configuration current when it arrived; open
//! connections keep theirs.
//!
//! Handshakes run in their own tasks under `handshake_timeout`, so one slow
//! client cannot hold up the accept loop.

use std::io;
use std::path::{Path, PathBuf};

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

pub use crate::config::TlsFiles;
use crate::service::task::AbortOnDrop;
use crate::service::transport::listener::Connection;

/// Why a set of TLS files cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{}: no {what} found (PEM)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// A PEM item could not be parsed.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the set (e.g. the key does not belong to the certificate).
    #[error("certificate and key refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify client certificates.
    #[error("client CA refused: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// The configuration in force, swapped whole by [`Certificates::reload`].
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Reads and checks the files.
    ///
    /// # Errors
    /// [`TlsError`] naming the file or the reason rustls gives.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let config = server_config(&files)?;
        Ok(Arc::new(Certificates {
            files,
            current: RwLock::new(config),
        }))
    }

    /// Re-reads the files; on success new connections get the new
    /// certificate, on failure the one in force stays.
    ///
    /// # Errors
    /// [`TlsError`]: the set was refused and nothing changed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(
            &self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(chain)
}

fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: files.key.clone(),
            what: "private key",
        },
        source => TlsError::Pem {
            path: files.key.clone(),
            source,
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path)? {
                roots.add(certificate)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    // `with_single_cert` refuses a key that does not match the leaf.
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A connection as tonic sees it: plaintext, or TLS over the same accepted
/// TCP connection (with its slot and timeouts).
pub enum MaybeTls {
    /// Plaintext.
    Plain(Connection),
    /// TLS, handshake done.
    Tls(Box<TlsStream<Connection>>),
}

/// The plaintext connections of `tcp` as tonic's incoming stream.
pub fn plain(
    tcp: impl Stream<Item = Result<Connection, io::Error>> + Send + 'static,
) -> impl Stream<Item = Result<MaybeTls, io::Error>> + Send + 'static {
    tcp.map(|connection| connection.map(MaybeTls::Plain))
}

/// The connections of `tcp` once their TLS handshake (with the certificate
/// current at arrival) is done; failed and slow handshakes are dropped and
/// logged at debug level. The accept task stops when the stream is dropped.
pub fn handshaken(
    tcp: impl Stream<Item = Result<Connection, io::Error>> + Send + 'static,
    certificates: Arc<Certificates>,
    handshake_timeout: Duration,
) -> impl Stream<Item = Result<MaybeTls, io::Error>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    let accept = tokio::spawn(async move {
        tokio::pin!(tcp);
        while let Some(Ok(connection)) = tcp.next().await {
            let acceptor = certificates.acceptor();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(connection)).await {
                    Ok(Ok(stream)) => {
                        let _ = sender.send(Ok(MaybeTls::Tls(Box::new(stream)))).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake too slow; connection closed"),
                }
            });
        }
    });
    let guard = AbortOnDrop::guard(accept);
    tokio_stream::wrappers::ReceiverStream::new(receiver).map(move |item| {
        let _keep_accepting = &guard;
        item
    })
}

impl AsyncRead for MaybeTls {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(stream) => stream.is_write_vectored(),
            MaybeTls::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_flush(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for MaybeTls {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            MaybeTls::Plain(stream) => stream.connect_info(),
            MaybeTls::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}
