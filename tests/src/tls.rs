//! A TLS front for the test relay. pulsar-lite speaks no TLS, so a `pulsar+ssl://` client
//! connects here and the front passes the plain bytes on to the relay. Its certificate, for
//! 127.0.0.1, is signed by a CA made for the front, whose PEM file a client is told to trust.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use openssl::{
    asn1::Asn1Time,
    bn::BigNum,
    hash::MessageDigest,
    pkey::{PKey, Private},
    rsa::Rsa,
    x509::{
        X509, X509Name,
        extension::{BasicConstraints, KeyUsage, SubjectAlternativeName},
    },
};

/// A TLS listener on a loopback port that forwards every connection to one address. Stops
/// when dropped.
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    counts: Arc<Counts>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Default)]
struct Counts {
    handshakes: AtomicU64,
    refused: AtomicU64,
}

impl TlsFront {
    /// Starts a front that forwards to `target` (a relay's address).
    pub fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the CA file");
        let (ca, ca_key) = certificate("pfn test CA", None);
        let (leaf, leaf_key) = certificate("127.0.0.1", Some((&ca, &ca_key)));
        let ca_file = dir.path().join("ca.pem");
        fs::write(&ca_file, ca.to_pem().expect("CA PEM")).expect("write the CA file");
        let key_pem = leaf_key.private_key_to_pem_pkcs8().expect("key PEM");
        let identity = native_tls::Identity::from_pkcs8(&leaf.to_pem().expect("PEM"), &key_pem).expect("identity");
        let acceptor = native_tls::TlsAcceptor::new(identity).expect("TLS acceptor");
        let acceptor = Arc::new(tokio_native_tls::TlsAcceptor::from(acceptor));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the front's runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind the front");
        let addr = listener.local_addr().expect("the front's address");
        let counts = Arc::new(Counts::default());
        runtime.spawn(serve(listener, acceptor, target, Arc::clone(&counts)));
        Self { addr, ca_file, counts, runtime: Some(runtime), _dir: dir }
    }

    /// `pulsar+ssl://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("pulsar+ssl://{}", self.addr)
    }

    /// The PEM file of the CA that signed the front's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// TLS handshakes that succeeded.
    pub fn handshakes(&self) -> u64 {
        self.counts.handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed (a client that does not trust the certificate, say).
    pub fn refused(&self) -> u64 {
        self.counts.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Arc<tokio_native_tls::TlsAcceptor>,
    target: SocketAddr,
    counts: Arc<Counts>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let (acceptor, counts) = (Arc::clone(&acceptor), Arc::clone(&counts));
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(client).await else {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            counts.handshakes.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut plain) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        });
    }
}

/// A certificate for `name` and its key: a CA when `issuer` is `None`, else a server
/// certificate for 127.0.0.1 signed by `issuer`.
fn certificate(name: &str, issuer: Option<(&X509, &PKey<Private>)>) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("key");
    let mut subject = X509Name::builder().expect("name");
    subject.append_entry_by_text("CN", name).expect("CN");
    let subject = subject.build();
    let mut builder = X509::builder().expect("certificate builder");
    builder.set_version(2).expect("version");
    let serial = BigNum::from_u32(if issuer.is_some() { 2 } else { 1 }).and_then(|n| n.to_asn1_integer());
    builder.set_serial_number(&serial.expect("serial")).expect("serial");
    builder.set_subject_name(&subject).expect("subject");
    builder.set_issuer_name(issuer.map_or(&subject, |(ca, _)| ca.subject_name())).expect("issuer");
    builder.set_pubkey(&key).expect("public key");
    builder.set_not_before(&Asn1Time::days_from_now(0).expect("now")).expect("not before");
    builder.set_not_after(&Asn1Time::days_from_now(2).expect("later")).expect("not after");
    match issuer {
        None => {
            builder.append_extension(BasicConstraints::new().critical().ca().build().expect("CA")).expect("CA");
            let usage = KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("key usage");
            builder.append_extension(usage).expect("key usage");
        }
        Some((ca, _)) => {
            let names = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(ca), None))
                .expect("subject alternative names");
            builder.append_extension(names).expect("subject alternative names");
        }
    }
    let signer = issuer.map_or(&key, |(_, ca_key)| ca_key);
    builder.sign(signer, MessageDigest::sha256()).expect("sign");
    (builder.build(), key)
}
