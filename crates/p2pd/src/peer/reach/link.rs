//! The start of every peer link, before Noise (see `p2p_proto::peer`):
//! each end writes its [`LinkPreamble`] at once and reads the other's; the
//! two roles (and, when both dialled or both came through the relay, the
//! two static keys) say which end runs the Noise initiator. Then the Noise
//! XX handshake of `noise.rs`, over the same stream.

use p2p_proto::peer::{initiator_by_key, LinkPreamble, LinkRole, PeerHello, LINK_PREAMBLE_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::peer::noise::{self, NoiseError, NoiseLink, Transport, FIRST_MESSAGE_TIMEOUT};

/// Why a link failed before or during its handshake.
#[derive(Debug, thiserror::Error)]
pub enum LinkSetupError {
    /// Writing or reading the preamble failed.
    #[error("link preamble {op}: {source}")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// The stream's error.
        source: std::io::Error,
    },
    /// The other end sent no preamble within `FIRST_MESSAGE_TIMEOUT`.
    #[error("no link preamble in time")]
    Silent,
    /// The other end's first bytes are not a peer link's preamble.
    #[error("not a peer link (bad preamble)")]
    BadPreamble,
    /// The two roles cannot make a link (e.g. two listeners, a relayed end
    /// against a direct one, or our own key on both ends).
    #[error("link roles {mine:?}/{theirs:?} do not fit")]
    Roles {
        /// Ours.
        mine: LinkRole,
        /// Theirs.
        theirs: LinkRole,
    },
    /// The Noise handshake failed.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// We responded on a link we dialled, and the other end's hello names
    /// another user or invitation than the one we dialled for.
    #[error("the peer's hello is for another session")]
    WrongHello,
}

/// Writes `mine` and reads the other end's preamble.
pub(crate) async fn exchange<S: Transport>(
    stream: &mut S,
    mine: LinkRole,
) -> Result<LinkRole, LinkSetupError> {
    stream
        .write_all(&LinkPreamble(mine).encode())
        .await
        .map_err(|source| LinkSetupError::Io {
            op: "write",
            source,
        })?;
    let mut theirs = [0u8; LINK_PREAMBLE_LEN];
    timeout(FIRST_MESSAGE_TIMEOUT, stream.read_exact(&mut theirs))
        .await
        .map_err(|_| LinkSetupError::Silent)?
        .map_err(|source| LinkSetupError::Io { op: "read", source })?;
    LinkPreamble::decode(&theirs)
        .map(|p| p.0)
        .ok_or(LinkSetupError::BadPreamble)
}

/// What the end that reached out knows: who it reached for (the key the
/// server vouched for, the peer's name) and what it tells them.
pub(crate) struct Reaching<'a> {
    /// The peer's static key, from the server.
    pub(crate) key: &'a [u8],
    /// The peer's account name.
    pub(crate) user: &'a str,
    /// Our hello (our name, the invitation).
    pub(crate) hello: &'a PeerHello,
}

/// A link whose handshake verified: the peer's proven key and its hello
/// (for a link we reached out on, the peer and invitation we reached for).
pub(crate) struct Secured {
    /// The encrypted link.
    pub(crate) link: NoiseLink,
    /// The peer's static key.
    pub(crate) key: Vec<u8>,
    /// Who the peer is and which invitation the link is for.
    pub(crate) hello: PeerHello,
}

/// Preamble, roles, then Noise. `reaching` is `None` on a link our
/// listener accepted (whoever it is proves it in its hello, checked by
/// the caller); otherwise the peer must prove `reaching.key`, whichever
/// Noise role it gets.
pub(crate) async fn secure<S: Transport>(
    mut stream: S,
    mine: LinkRole,
    private: &[u8],
    public: &[u8],
    reaching: Option<Reaching<'_>>,
) -> Result<Secured, LinkSetupError> {
    let theirs = exchange(&mut stream, mine).await?;
    let their_key = reaching.as_ref().map_or(&[][..], |r| r.key);
    let roles = LinkSetupError::Roles { mine, theirs };
    let initiator = initiator_by_key(mine, theirs, public, their_key).ok_or(roles)?;
    match (initiator, reaching) {
        (true, Some(r)) => {
            let link = noise::initiate(stream, private, r.key, r.hello).await?;
            let hello = PeerHello {
                user: r.user.to_string(),
                invite: r.hello.invite,
            };
            Ok(Secured {
                link,
                key: r.key.to_vec(),
                hello,
            })
        }
        // Only a dialler (or a relayed end) initiates, and it knows whom.
        (true, None) => Err(LinkSetupError::Roles { mine, theirs }),
        (false, reaching) => {
            let (link, key, hello) = noise::respond(stream, private).await?;
            if let Some(r) = reaching {
                if key != r.key {
                    let got = key;
                    let expected = r.key.to_vec();
                    return Err(NoiseError::WrongKey { got, expected }.into());
                }
                if hello.user != r.user || hello.invite != r.hello.invite {
                    return Err(LinkSetupError::WrongHello);
                }
            }
            Ok(Secured { link, key, hello })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::peer::{PeerMsg, NOISE_PARAMS};

    fn keypair() -> snow::Keypair {
        snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .generate_keypair()
            .unwrap()
    }

    fn hello(user: &str) -> PeerHello {
        PeerHello {
            user: user.into(),
            invite: 9,
        }
    }

    /// Runs both ends with the given roles (alice always reaching out to
    /// bob; bob reaching out to alice unless `bob_accepts`) and checks a
    /// message goes through.
    async fn link_up(alice_role: LinkRole, bob_role: LinkRole, bob_accepts: bool) {
        let (a, b) = tokio::io::duplex(4096);
        let (alice, bob) = (keypair(), keypair());
        let (ha, hb) = (hello("alice"), hello("bob"));
        let to_bob = Reaching {
            key: &bob.public,
            user: "bob",
            hello: &ha,
        };
        let to_alice = Reaching {
            key: &alice.public,
            user: "alice",
            hello: &hb,
        };
        let (x, y) = tokio::join!(
            secure(a, alice_role, &alice.private, &alice.public, Some(to_bob)),
            secure(
                b,
                bob_role,
                &bob.private,
                &bob.public,
                (!bob_accepts).then_some(to_alice)
            )
        );
        let (mut x, mut y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            (x.key.as_slice(), x.hello.user.as_str()),
            (&bob.public[..], "bob")
        );
        assert_eq!(
            (y.key.as_slice(), y.hello.user.as_str()),
            (&alice.public[..], "alice")
        );
        assert_eq!((x.hello.invite, y.hello.invite), (9, 9));
        x.link.send(&[PeerMsg::Ping]).await.unwrap();
        assert!(matches!(
            y.link.recv().await.unwrap().unwrap().as_slice(),
            [PeerMsg::Ping]
        ));
        y.link.send(&[PeerMsg::Pong]).await.unwrap();
        assert!(matches!(
            x.link.recv().await.unwrap().unwrap().as_slice(),
            [PeerMsg::Pong]
        ));
    }

    #[tokio::test]
    async fn a_dialler_meets_a_listener() {
        link_up(LinkRole::Dial, LinkRole::Accept, true).await;
    }

    /// A simultaneous open: both ends think they dialled; the keys decide.
    #[tokio::test]
    async fn two_diallers_agree_on_roles_by_key() {
        link_up(LinkRole::Dial, LinkRole::Dial, false).await;
    }

    #[tokio::test]
    async fn two_relayed_ends_agree_on_roles_by_key() {
        link_up(LinkRole::Relay, LinkRole::Relay, false).await;
    }

    /// Garbage, or roles that do not fit, end the link with an error.
    #[tokio::test]
    async fn a_wrong_preamble_is_refused() {
        let me = keypair();
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let got = secure(b, LinkRole::Accept, &me.private, &me.public, None).await;
        assert!(matches!(got.err(), Some(LinkSetupError::BadPreamble)));

        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(&LinkPreamble(LinkRole::Relay).encode())
            .await
            .unwrap();
        let got = secure(b, LinkRole::Accept, &me.private, &me.public, None).await;
        assert!(matches!(got.err(), Some(LinkSetupError::Roles { .. })));

        // A dialler meeting a listener that claims to be a dialler too, but
        // with our own key: no roles.
        let (mut a, b) = tokio::io::duplex(4096);
        a.write_all(&LinkPreamble(LinkRole::Dial).encode())
            .await
            .unwrap();
        let h = hello("me");
        let to_self = Reaching {
            key: &me.public,
            user: "me",
            hello: &h,
        };
        let got = secure(b, LinkRole::Dial, &me.private, &me.public, Some(to_self)).await;
        assert!(matches!(got.err(), Some(LinkSetupError::Roles { .. })));
    }
}
