//! TLS 1.3 session resumption between the daemon's pinned client and the
//! real server: a reconnect is a PSK handshake, and a pin never resumes a
//! session with a server it did not check.

use futures::{SinkExt, StreamExt};
use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{Auth, ClientMsg, PeerInfo, ServerMsg};
use p2p_proto::Secret;
use p2p_testkit::TestServer;
use p2pd::handshake::{self, HandshakeError, ServerConn};
use p2pd::tlsclient::{ClientTls, PinVerifier};
use std::sync::Arc;
use tokio_rustls::rustls::HandshakeKind;

const PASSWORD: &str = "resumption-test-password";

fn kind(conn: &ServerConn) -> Option<HandshakeKind> {
    conn.get_ref().get_ref().1.handshake_kind()
}

async fn connect(server: &TestServer, pin: Arc<PinVerifier>) -> Result<ServerConn, HandshakeError> {
    handshake::connect(&server.addr.to_string(), None, pin).await
}

/// Logs in (reading the answer also takes in the ticket the server sent
/// after the handshake) and returns the resume token.
async fn login(conn: &mut ServerConn, user: &str, auth: Auth) -> Secret {
    let peer = PeerInfo {
        port: 9,
        advertise: None,
        public_key: "00".repeat(32),
        lan: Vec::new(),
    };
    let msg = ClientMsg::Login {
        version: WIRE_VERSION,
        user: user.into(),
        auth,
        peer,
    };
    match handshake::login(conn, msg).await.expect("login answer") {
        ServerMsg::LoginOk { token, .. } => token,
        other => panic!("login of {user}: {other:?}"),
    }
}

fn password() -> Auth {
    Auth::Password {
        password: Secret::new(PASSWORD),
    }
}

/// The daemon's path (`PinVerifier::new` for its pin on every attempt):
/// the second connection resumes, and logs in with its token.
#[tokio::test]
async fn a_daemon_reconnect_resumes_the_tls_session() {
    let server = TestServer::start(&[]);
    server.add_user("alice", PASSWORD);
    let pin = || PinVerifier::new(Some(server.fingerprint.clone()));
    let mut first = connect(&server, pin()).await.expect("first connect");
    assert_eq!(kind(&first), Some(HandshakeKind::Full));
    let token = login(&mut first, "alice", password()).await;
    let mut conn = first.into_inner();
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn).await;
    drop(conn);

    let verifier = pin();
    let mut again = connect(&server, verifier.clone()).await.expect("reconnect");
    assert_eq!(kind(&again), Some(HandshakeKind::Resumed));
    login(&mut again, "alice", Auth::Token { token }).await;
    again.send(ClientMsg::Logout).await.unwrap();
    assert!(matches!(
        again.next().await,
        Some(Ok(ServerMsg::Closing { .. }))
    ));
}

/// A ticket from one server identity is worth nothing with another: the
/// client offers it, gets a full handshake, and the pin refuses it. A
/// configuration for another pin has no ticket at all.
#[tokio::test]
async fn a_new_identity_gets_a_full_handshake_and_is_refused() {
    let server = TestServer::start(&[]);
    server.add_user("bob", PASSWORD);
    let tls = ClientTls::new(Some(server.fingerprint.clone())).unwrap();
    let mut conn = connect(&server, PinVerifier::with_client(tls.clone()))
        .await
        .expect("connect");
    assert_eq!(kind(&conn), Some(HandshakeKind::Full));
    let token = login(&mut conn, "bob", password()).await;
    drop(conn);
    let mut conn = connect(&server, PinVerifier::with_client(tls.clone()))
        .await
        .expect("reconnect");
    assert_eq!(kind(&conn), Some(HandshakeKind::Resumed));
    // The answer brings the next ticket.
    login(&mut conn, "bob", Auth::Token { token }).await;
    drop(conn);

    // Another server (its own identity and ticket keys) on another port:
    // the same name in SNI, so the ticket bob holds is offered.
    let other = TestServer::start(&[]);
    assert_ne!(other.fingerprint, server.fingerprint);
    let refused = connect(&other, PinVerifier::with_client(tls.clone()))
        .await
        .expect_err("another identity is refused");
    assert!(
        refused.to_string().contains("does not match the pinned"),
        "{refused}"
    );

    // A configuration for another pin starts from nothing: a full
    // handshake, refused.
    let wrong = ClientTls::new(Some(other.fingerprint.clone())).unwrap();
    let refused = connect(&server, PinVerifier::with_client(wrong))
        .await
        .expect_err("a different pin is refused");
    assert!(
        refused.to_string().contains("does not match the pinned"),
        "{refused}"
    );
}
