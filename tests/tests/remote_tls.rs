//! `RemoteProvider` over HTTPS: a control plane on 127.0.0.1 served with
//! rustls (tokio-rustls under `axum::serve`), its certificates issued at
//! test time by an authority made for the test (rcgen). What TLS adds to
//! the plain-HTTP tests of `remote_provider.rs`:
//!
//! * a client that trusts the authority fetches policies, per key and as a
//!   set, by name and by IP address;
//! * a client that does not (the default client, whose roots are public
//!   ones; a client trusting another authority), or a certificate for
//!   another name, expired, or self-signed, fails the fetch: the last good
//!   policy keeps being served as `lkg`, or the layer below answers, with
//!   the TLS error as `policy_error`;
//! * the timeout bounds a handshake that never finishes as well as an
//!   answer that never comes;
//! * body limits hold over TLS, announced or streamed;
//! * hostile payloads are clamped or refused as over plain HTTP (the cases
//!   of `remote_provider.rs`, in [`clamped_payloads`] and
//!   [`refused_payloads`]).
//!
//! Real time, as in `remote_provider.rs` (TLS needs real sockets): every
//! wait is a `refresh` or a polling loop bounded at 10 s, and nothing
//! asserts that something does not happen within a window.
#![cfg(feature = "remote-tls")]
#![allow(missing_docs)]

mod support;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use recourse::Executor;
use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::provider::{LayeredProvider, PolicyProvider, ProviderErrorKind, RemoteProvider, StaticProvider};
use support::PolicyErrors;
use support::remote::{
    KEY, WAIT, cause, clamped_payloads, eventually, failing_call, key, padded_policy, policy_json, refused_payloads,
    served,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, rustls};

/// The name the control plane's certificates are issued for; clients
/// resolve it to the server's address on 127.0.0.1 (no DNS).
const HOST: &str = "control-plane.test";

// ---------------------------------------------------------------------------
// Certificates.

/// A certificate authority made for one test.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate").der().clone();
        Authority { issuer: Issuer::new(params, key), certificate }
    }

    /// What a client adds to trust this authority.
    fn root(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_der(&self.certificate).expect("DER certificate")
    }

    /// Server settings with a certificate this authority issued for
    /// `names` (DNS names or IP addresses).
    fn serve(&self, names: &[&str]) -> Arc<ServerConfig> {
        self.serve_with(&CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap())
    }

    /// Server settings with a certificate this authority issued from
    /// `params`.
    fn serve_with(&self, params: &CertificateParams) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("server key");
        let certificate = params.signed_by(&key, &self.issuer).expect("server certificate");
        server_config(certificate.der().clone(), &key)
    }
}

/// Server settings presenting `certificate` (alone: no chain) with `key`.
fn server_config(certificate: CertificateDer<'static>, key: &KeyPair) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate], PrivatePkcs8KeyDer::from(key.serialize_der()).into())
        .expect("server certificate and key");
    Arc::new(config)
}

/// A certificate for [`HOST`] signed by its own key: no authority vouches
/// for it.
fn self_signed() -> Arc<ServerConfig> {
    let key = KeyPair::generate().expect("key");
    let certificate = CertificateParams::new(vec![HOST.to_owned()]).unwrap().self_signed(&key).expect("certificate");
    server_config(certificate.der().clone(), &key)
}

/// A client for the control plane at `addr` (as [`HOST`]) that trusts
/// `roots` and nothing else, opening a connection (and so a handshake) per
/// fetch.
fn client(addr: SocketAddr, roots: &[&Authority]) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve(HOST, addr)
        .pool_max_idle_per_host(0);
    roots.iter().fold(builder, |builder, authority| builder.add_root_certificate(authority.root())).build().unwrap()
}

// ---------------------------------------------------------------------------
// The control plane.

/// What the control plane answers.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Json(String),
    /// Never answers (the client times out).
    Hang,
}

/// The server's script (per key; `"set"` for the policy set), the
/// certificate it presents, and what it saw.
#[derive(Clone)]
struct Control {
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    requests: Arc<AtomicUsize>,
    /// The settings new connections are accepted with: swapped to change
    /// the certificate.
    tls: Arc<Mutex<Arc<ServerConfig>>>,
    /// Accept connections but never answer their handshake.
    stall: Arc<AtomicBool>,
    /// Handshakes that failed, as the server saw them.
    refused: Arc<Mutex<Vec<String>>>,
}

impl Control {
    fn new(tls: Arc<ServerConfig>) -> Self {
        Control {
            replies: Arc::default(),
            requests: Arc::default(),
            tls: Arc::new(Mutex::new(tls)),
            stall: Arc::default(),
            refused: Arc::default(),
        }
    }

    fn set(&self, key: &str, reply: Reply) {
        locked(&self.replies).insert(key.to_owned(), reply);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// New connections present this certificate.
    fn present(&self, tls: Arc<ServerConfig>) {
        *locked(&self.tls) = tls;
    }

    fn refused(&self) -> Vec<String> {
        locked(&self.refused).clone()
    }
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn answer(State(control): State<Control>, Path(key): Path<String>) -> Response {
    reply(&control, &key).await
}

async fn answer_set(State(control): State<Control>) -> Response {
    reply(&control, "set").await
}

async fn reply(control: &Control, key: &str) -> Response {
    control.requests.fetch_add(1, Ordering::SeqCst);
    let reply = locked(&control.replies).get(key).cloned();
    match reply {
        Some(Reply::Json(body)) => (StatusCode::OK, body).into_response(),
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// TCP connections on 127.0.0.1, handed to axum once their TLS handshake
/// is done (one at a time: enough for a test's few clients).
struct TlsListener {
    tcp: TcpListener,
    control: Control,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if self.control.stall.load(Ordering::SeqCst) {
                // Held open and never answered, until the test's runtime ends.
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(tcp);
                });
                continue;
            }
            let acceptor = TlsAcceptor::from(Arc::clone(&locked(&self.control.tls)));
            match tokio::time::timeout(WAIT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => locked(&self.control.refused).push(error.to_string()),
                Err(_) => locked(&self.control.refused).push("handshake timed out".to_owned()),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An HTTPS control plane serving `GET /policies/{key}` and `GET /set`.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(control: &Control) -> Server {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let addr = tcp.local_addr().expect("local address");
        let app = Router::new()
            .route("/policies/{key}", get(answer))
            .route("/set", get(answer_set))
            .with_state(control.clone());
        let listener = TlsListener { tcp, control: control.clone() };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Server { addr, stop: Some(stop), task }
    }

    /// The per-key URL, by name (the client resolves [`HOST`]).
    fn per_key_url(&self) -> String {
        format!("https://{HOST}:{}/policies/{{key}}", self.addr.port())
    }

    fn set_url(&self) -> String {
        format!("https://{HOST}:{}/set", self.addr.port())
    }

    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task).await.expect("the server shuts down").expect("server task");
    }
}

/// A raw HTTPS server whose answers have no Content-Length (the body ends
/// when the connection closes): `/policies/small.Ok` gets a small policy,
/// any other path `big` bytes.
async fn raw_tls_server(tls: Arc<ServerConfig>, big: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = TlsAcceptor::from(Arc::clone(&tls));
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let small = String::from_utf8_lossy(&head).contains("/policies/small.Ok ");
                let body = if small { policy_json(4) } else { padded_policy(big) };
                let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if stream.write_all(head).await.is_err() {
                    return;
                }
                for chunk in body.as_bytes().chunks(512) {
                    if stream.write_all(chunk).await.and(stream.flush().await).is_err() {
                        return;
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------
// Helpers (as in `remote_provider.rs`).

/// The rustls verdict on a certificate no trusted authority issued.
const UNKNOWN_ISSUER: &str = "invalid peer certificate: UnknownIssuer";

// ---------------------------------------------------------------------------
// Trust.

// A client that trusts the control plane's authority fetches over HTTPS:
// a miss starts a background fetch, a refresh waits for one, a set is
// fetched whole, by name or by IP address; running calls use the policy.
#[tokio::test]
async fn a_policy_is_fetched_over_https() {
    let authority = Authority::new("recourse test CA");
    let control = Control::new(authority.serve(&[HOST, "127.0.0.1"]));
    control.set(KEY, Reply::Json(policy_json(5)));
    control.set("set", Reply::Json(r#"{"policies": [{"key": "users.Put", "retry": {"max_attempts": 2}}]}"#.into()));
    let server = Server::start(&control).await;
    let provider = Arc::new(
        RemoteProvider::builder(server.per_key_url())
            .ttl(Duration::from_secs(600))
            .client(client(server.addr, &[&authority]))
            .build()
            .unwrap(),
    );

    assert!(served(&provider, &key()).is_none(), "a miss answers at once");
    let policy = eventually("the policy over HTTPS", || served(&provider, &key())).await;
    assert_eq!((policy.retry.max_attempts, policy.meta.source), (5, PolicySource::Remote));
    assert!(policy.is_normalized() && policy.meta.error.is_none());
    let executor = Executor::builder().provider(Arc::clone(&provider)).build();
    let (attempts, timeline) = failing_call(&executor).await;
    assert_eq!(attempts, 5);
    assert_eq!(timeline.attributes.get("policy_source"), Some("remote"));

    let by_address = format!("https://127.0.0.1:{}/policies/{{key}}", server.addr.port());
    let by_address = RemoteProvider::builder(by_address).client(client(server.addr, &[&authority])).build().unwrap();
    assert_eq!(by_address.refresh(&key()).await.unwrap().unwrap().retry.max_attempts, 5);

    let set = RemoteProvider::builder(server.set_url()).client(client(server.addr, &[&authority])).build().unwrap();
    set.refresh_all().await.unwrap();
    assert_eq!(served(&set, &PolicyKey::parse("users.Put")).unwrap().retry.max_attempts, 2);
    assert!(served(&set, &key()).is_none(), "not in the set");

    assert_eq!(control.requests(), 3);
    assert_eq!(control.refused(), Vec::<String>::new());
    server.shut_down().await;
}

// A client that does not trust the certificate fails every fetch with the
// TLS error: the default client (rustls with public roots only) and one
// trusting another authority. With nothing fetched before, the key is "not
// configured here"; authoritative, the layer below answers with the TLS
// error as `policy_error`, heard by observers once.
#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_the_fetch() {
    let authority = Authority::new("recourse test CA");
    let stranger = Authority::new("another CA");
    let control = Control::new(authority.serve(&[HOST, "127.0.0.1"]));
    control.set(KEY, Reply::Json(policy_json(5)));
    let server = Server::start(&control).await;

    let url = format!("https://127.0.0.1:{}/policies/{{key}}", server.addr.port());
    let default_client = RemoteProvider::builder(url).build().unwrap();
    let error = default_client.refresh(&key()).await.unwrap_err();
    assert_eq!(error.kind(), ProviderErrorKind::FetchFailed);
    assert!(cause(&error).contains(UNKNOWN_ISSUER), "{}", cause(&error));
    assert!(served(&default_client, &key()).is_none());

    let remote = Arc::new(
        RemoteProvider::builder(server.per_key_url())
            .client(client(server.addr, &[&stranger]))
            .negative_ttl(Duration::from_secs(600))
            .authoritative(true)
            .build()
            .unwrap(),
    );
    let error = remote.refresh(&key()).await.unwrap_err();
    assert!(cause(&error).contains(UNKNOWN_ISSUER), "{}", cause(&error));
    assert_eq!(remote.policy(&key()).unwrap_err().kind(), ProviderErrorKind::FetchFailed);

    let shipped = StaticProvider::new().with(Policy::builder(KEY).max_attempts(2).build());
    let observer = PolicyErrors::default();
    let executor = Executor::builder()
        .provider(LayeredProvider::new().layer(Arc::clone(&remote)).layer(shipped))
        .observer(observer.clone())
        .build();
    let (attempts, timeline) = failing_call(&executor).await;
    assert_eq!(attempts, 2, "the shipped policy");
    let why = timeline.attributes.get("policy_error").unwrap_or_default();
    assert!(why.contains(UNKNOWN_ISSUER) && why.contains(&format!("https://{HOST}:")), "{why}");
    failing_call(&executor).await;
    let heard: Vec<(String, String)> = observer.take();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].1.contains(UNKNOWN_ISSUER), "{heard:?}");

    assert_eq!(control.requests(), 0, "no request is sent before the certificate is trusted");
    // The server hears the client's alert after the client has moved on.
    let refused =
        eventually("the server to see both refusals", || Some(control.refused()).filter(|r| r.len() >= 2)).await;
    assert!(refused.iter().all(|e| e.contains("received fatal alert: UnknownCA")), "{refused:?}");
    server.shut_down().await;
}

// The control plane starts presenting a certificate the client cannot
// accept (from another authority, for another name, expired, self-signed):
// each fetch fails with that TLS error, and the last good policy keeps
// being served as `lkg` with it; a good certificate again recovers.
#[tokio::test]
async fn a_certificate_the_client_cannot_accept_keeps_the_last_known_good_policy() {
    let authority = Authority::new("recourse test CA");
    let stranger = Authority::new("another CA");
    let control = Control::new(authority.serve(&[HOST]));
    control.set(KEY, Reply::Json(policy_json(5)));
    let server = Server::start(&control).await;
    let provider = Arc::new(
        RemoteProvider::builder(server.per_key_url())
            .ttl(Duration::from_secs(600))
            .negative_ttl(Duration::from_secs(600))
            .client(client(server.addr, &[&authority]))
            .build()
            .unwrap(),
    );
    assert_eq!(provider.refresh(&key()).await.unwrap().unwrap().meta.source, PolicySource::Remote);
    let observer = PolicyErrors::default();
    let executor = Executor::builder().provider(Arc::clone(&provider)).observer(observer.clone()).build();

    let mut expired = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cases: [(&str, Arc<ServerConfig>, &str); 4] = [
        ("another authority", stranger.serve(&[HOST]), UNKNOWN_ISSUER),
        ("another name", authority.serve(&["other.test"]), "certificate not valid for name \"control-plane.test\""),
        ("expired", authority.serve_with(&expired), "invalid peer certificate: certificate expired"),
        ("self-signed", self_signed(), UNKNOWN_ISSUER),
    ];
    let requests = control.requests();
    for (case, tls, problem) in cases {
        control.present(tls);
        let error = provider.refresh(&key()).await.unwrap_err();
        assert_eq!(error.kind(), ProviderErrorKind::FetchFailed, "{case}");
        assert!(cause(&error).contains(problem), "{case}: expected {problem:?} in {:?}", cause(&error));

        let policy = served(&provider, &key()).unwrap();
        assert_eq!((policy.retry.max_attempts, policy.meta.source), (5, PolicySource::LastKnownGood), "{case}");
        assert!(policy.meta.error.as_deref().is_some_and(|e| e.contains(problem)), "{case}: {:?}", policy.meta.error);
        let (attempts, timeline) = failing_call(&executor).await;
        assert_eq!(attempts, 5, "{case}");
        assert_eq!(timeline.attributes.get("policy_source"), Some("lkg"), "{case}");
        let why = timeline.attributes.get("policy_error").unwrap_or_default();
        assert!(why.contains(problem), "{case}: expected {problem:?} in the timeline's {why:?}");
        let heard = observer.take();
        assert!(heard.iter().any(|(_, error)| error.contains(problem)), "{case}: {heard:?}");
    }
    assert_eq!(control.requests(), requests, "no request reached the server");

    control.present(authority.serve(&[HOST]));
    control.set(KEY, Reply::Json(policy_json(6)));
    let policy = provider.refresh(&key()).await.unwrap().unwrap();
    assert_eq!((policy.retry.max_attempts, policy.meta.source), (6, PolicySource::Remote));
    assert!(policy.meta.error.is_none());
    let (attempts, timeline) = failing_call(&executor).await;
    assert_eq!(attempts, 6);
    assert_eq!(timeline.attributes.get("policy_error"), None);
    server.shut_down().await;
}

// ---------------------------------------------------------------------------
// Bounds.

// The fetch's timeout bounds a handshake the server never answers as well
// as an answer that never comes; the last good policy is served meanwhile.
#[tokio::test]
async fn a_stalled_handshake_or_answer_is_bounded_by_the_timeout() {
    let authority = Authority::new("recourse test CA");
    let control = Control::new(authority.serve(&[HOST]));
    control.set(KEY, Reply::Json(policy_json(5)));
    let server = Server::start(&control).await;
    let provider = RemoteProvider::builder(server.per_key_url())
        .ttl(Duration::from_secs(600))
        .negative_ttl(Duration::from_secs(600))
        .timeout(Duration::from_millis(300))
        .client(client(server.addr, &[&authority]))
        .build()
        .unwrap();
    provider.refresh(&key()).await.unwrap();

    control.stall.store(true, Ordering::SeqCst);
    let error =
        tokio::time::timeout(WAIT, provider.refresh(&key())).await.expect("bounded by the timeout").unwrap_err();
    assert!(cause(&error).contains("timed out after 300ms"), "{}", cause(&error));
    let policy = served(&provider, &key()).unwrap();
    assert_eq!((policy.retry.max_attempts, policy.meta.source), (5, PolicySource::LastKnownGood));

    control.stall.store(false, Ordering::SeqCst);
    control.set(KEY, Reply::Hang);
    let error =
        tokio::time::timeout(WAIT, provider.refresh(&key())).await.expect("bounded by the timeout").unwrap_err();
    assert!(cause(&error).contains("timed out after 300ms"), "{}", cause(&error));
    assert_eq!(served(&provider, &key()).unwrap().meta.source, PolicySource::LastKnownGood);

    control.set(KEY, Reply::Json(policy_json(5)));
    assert_eq!(provider.refresh(&key()).await.unwrap().unwrap().meta.source, PolicySource::Remote);
    server.shut_down().await;
}

// A body over `max_body_bytes` is refused over TLS whether it announces its
// length or streams until the connection closes; the same bodies under the
// limit are accepted.
#[tokio::test]
async fn oversized_bodies_are_refused_over_tls() {
    let limit = 1024;
    let authority = Authority::new("recourse test CA");
    let control = Control::new(authority.serve(&[HOST]));
    control.set(KEY, Reply::Json(padded_policy(4 * limit)));
    let server = Server::start(&control).await;
    let strict = RemoteProvider::builder(server.per_key_url())
        .max_body_bytes(limit)
        .client(client(server.addr, &[&authority]))
        .build()
        .unwrap();
    let error = strict.refresh(&key()).await.unwrap_err();
    assert!(cause(&error).contains("bytes is over the limit of 1024 bytes"), "{}", cause(&error));
    let roomy =
        RemoteProvider::builder(server.per_key_url()).client(client(server.addr, &[&authority])).build().unwrap();
    assert_eq!(roomy.refresh(&key()).await.unwrap().unwrap().retry.max_attempts, 4);

    let addr = raw_tls_server(authority.serve(&[HOST]), 64 * limit).await;
    let url = format!("https://{HOST}:{}/policies/{{key}}", addr.port());
    let strict =
        RemoteProvider::builder(&url).max_body_bytes(limit).client(client(addr, &[&authority])).build().unwrap();
    let error = strict.refresh(&key()).await.unwrap_err();
    assert!(cause(&error).contains("the body is over the limit of 1024 bytes"), "{}", cause(&error));
    let small = strict.refresh(&PolicyKey::parse("small.Ok")).await.unwrap().unwrap();
    assert_eq!(small.retry.max_attempts, 4, "a streamed body under the limit is read whole");
    let roomy = RemoteProvider::builder(&url).client(client(addr, &[&authority])).build().unwrap();
    assert_eq!(roomy.refresh(&key()).await.unwrap().unwrap().retry.max_attempts, 4);
    server.shut_down().await;
}

// ---------------------------------------------------------------------------
// Payloads.

// Hostile payloads over TLS: clamped by normalization (and listed in
// `meta.normalization`) or refused with the decoder's message, the last
// good policy kept; no policy beyond the clamps is ever served.
#[tokio::test]
async fn hostile_payloads_over_tls_are_clamped_or_refused() {
    let authority = Authority::new("recourse test CA");
    let control = Control::new(authority.serve(&[HOST]));
    let server = Server::start(&control).await;
    let provider = RemoteProvider::builder(server.per_key_url())
        .ttl(Duration::from_secs(600))
        .negative_ttl(Duration::from_secs(600))
        .client(client(server.addr, &[&authority]))
        .build()
        .unwrap();

    for (body, field) in clamped_payloads() {
        control.set(KEY, Reply::Json(body.to_owned()));
        let policy = provider.refresh(&key()).await.unwrap_or_else(|e| panic!("{body}: {}", cause(&e))).unwrap();
        assert!(policy.is_normalized(), "{body}");
        assert!(policy.meta.normalization.changed_fields().contains(&field), "{body}: {:?}", policy.meta.normalization);
        assert_eq!(policy.meta.source, PolicySource::Remote);
    }
    control.set(KEY, Reply::Json(r#"{"retry": {"max_attempts": 1000000}}"#.to_owned()));
    assert_eq!(provider.refresh(&key()).await.unwrap().unwrap().retry.max_attempts, 10);

    for (body, problem) in refused_payloads() {
        control.set(KEY, Reply::Json(body.clone()));
        let error = provider.refresh(&key()).await.unwrap_err();
        let why = cause(&error);
        let shown = &body[..body.len().min(60)];
        assert!(why.contains("invalid policy JSON") && why.contains(problem), "{shown}: {why}");
        assert!(why.chars().count() <= 1100, "the message is clipped: {} characters", why.chars().count());
        let policy = served(&provider, &key()).unwrap();
        assert_eq!((policy.retry.max_attempts, policy.meta.source), (10, PolicySource::LastKnownGood), "{shown}");
        assert!(policy.is_normalized());
    }
    server.shut_down().await;
}
