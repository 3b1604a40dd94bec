//! The two sides of an invitation as commands: `connect` (invite, wait for
//! the answer, dial) and `accept`/`reject` (answer, then let the inviter in).

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::ctl::{Answered, ConnectDone, CtlError, ErrorCode, PendingRequest};
use p2p_proto::limits::DIAL_IN_GRACE;
use p2p_proto::time::rfc3339;
use p2p_proto::wire::{Reply, Request};
use tokio::sync::oneshot;

use super::Peers;
use crate::handlers::reply_error;
use crate::link::LinkHandle;

impl Peers {
    /// Invites `user`; unless `no_wait`, waits up to `wait` for the session.
    pub async fn connect(
        self: &Arc<Self>,
        link: &LinkHandle,
        user: &str,
        wait: Duration,
        no_wait: bool,
    ) -> Result<ConnectDone, CtlError> {
        if let Some((info, _)) = self.session(user) {
            return Ok(ConnectDone {
                connected: Some(info),
                invited: None,
            });
        }
        let (invite, expires_ms) = match link
            .request(Request::Invite {
                to: user.to_string(),
            })
            .await?
        {
            Reply::Invited { invite, expires_ms } => (invite, expires_ms),
            other => return Err(reply_error(other)),
        };
        if no_wait {
            self.register_outgoing(link, invite, user, None);
            let invited = PendingRequest {
                from: user.to_string(),
                expires_at: rfc3339(expires_ms),
            };
            return Ok(ConnectDone {
                connected: None,
                invited: Some(invited),
            });
        }
        let (tx, rx) = oneshot::channel();
        self.register_outgoing(link, invite, user, Some(tx));
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(info))) => Ok(ConnectDone {
                connected: Some(info),
                invited: None,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(CtlError::new(
                ErrorCode::Internal,
                "daemon is shutting down",
            )),
            Err(_) => {
                self.forget_outgoing(invite);
                Err(CtlError::new(
                    ErrorCode::Timeout,
                    format!("{user} did not answer within {}s", wait.as_secs()),
                ))
            }
        }
    }

    /// Answers `user`'s invitation. Accepting waits (up to the dial-in grace)
    /// for the inviter to connect.
    pub async fn answer(
        self: &Arc<Self>,
        link: &LinkHandle,
        user: &str,
        accept: bool,
    ) -> Result<Answered, CtlError> {
        let invite = self.take_request(user).ok_or_else(|| {
            CtlError::new(
                ErrorCode::NoRequest,
                format!("{user} has not invited you (see p2pctl requests)"),
            )
        })?;
        if accept {
            self.accepting(user, invite, true);
        }
        let answered = link.request(Request::Answer { invite, accept }).await;
        let expecting = match &answered {
            Ok(Reply::Answered {
                contact: Some(c), ..
            }) if accept => {
                self.check_key(c);
                let (tx, rx) = oneshot::channel();
                self.expect(c, invite, tx).map(|()| Some(rx))
            }
            _ => Ok(None),
        };
        // The key (if any) is registered: links waiting on us may proceed.
        self.accepting(user, invite, false);
        let contact = match answered? {
            Reply::Answered { contact, .. } => contact,
            other => return Err(reply_error(other)),
        };
        let Some(contact) = contact.filter(|_| accept) else {
            return Ok(Answered {
                peer: user.to_string(),
                accepted: false,
                session: None,
            });
        };
        let Some(rx) = expecting? else {
            return Err(CtlError::new(
                ErrorCode::Internal,
                format!("no contact for {}", contact.user),
            ));
        };
        match tokio::time::timeout(DIAL_IN_GRACE, rx).await {
            Ok(Ok(Ok(info))) => Ok(Answered {
                peer: user.to_string(),
                accepted: true,
                session: Some(info),
            }),
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(CtlError::new(
                ErrorCode::Timeout,
                format!("accepted, but {user} did not connect in time"),
            )),
        }
    }
}
