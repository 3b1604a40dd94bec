//! `send [--now] USER TEXT...` (SPEC §5, §11): the messages are stored in
//! the outbox first (durable before any answer), then delivered over the
//! session, or left queued for a contact without one. `--now` never
//! queues: without a session it fails, and what its session did not
//! deliver fails.

use futures::future::BoxFuture;
use p2p_proto::ctl::{CtlError, ErrorCode, SendStatus, SentList, SentMessage};
use p2p_proto::limits::MAX_MESSAGE_BYTES;

use crate::outbox::{blocking, Status};
use crate::Daemon;

fn internal(e: impl std::fmt::Display) -> CtlError {
    CtlError::new(ErrorCode::Internal, e.to_string())
}

/// Refuses what cannot be sent at all: nothing, a blank message, too much.
pub(crate) fn check_texts(texts: &[String]) -> Result<(), CtlError> {
    if texts.is_empty() {
        return Err(CtlError::new(ErrorCode::BadRequest, "nothing to send"));
    }
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "a message cannot be empty or only spaces. Nothing was sent",
        ));
    }
    if let Some(t) = texts.iter().find(|t| t.len() > MAX_MESSAGE_BYTES) {
        return Err(CtlError::new(
            ErrorCode::TooLarge,
            format!(
                "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}. Nothing was sent",
                t.len()
            ),
        ));
    }
    Ok(())
}

/// Runs `send`.
pub(crate) async fn run(
    daemon: &Daemon,
    user: String,
    texts: Vec<String>,
    now: bool,
) -> Result<SentList, CtlError> {
    start(daemon, user, texts, now).await?.await
}

/// What is left of a `send` once its messages are stored: the wait for
/// their delivery, and the answer.
pub(crate) type Delivery = BoxFuture<'static, Result<SentList, CtlError>>;

/// Runs `send` up to storing its messages in the outbox (durable, in
/// order, when this returns); the rest runs in the returned future. A
/// control connection stores its next `send` while this one is delivered.
pub(crate) async fn start(
    daemon: &Daemon,
    user: String,
    texts: Vec<String>,
    now: bool,
) -> Result<Delivery, CtlError> {
    super::check_user(&user)?;
    check_texts(&texts)?;
    let contacts = daemon.peers.contacts.clone();
    let who = user.clone();
    let contact = blocking(move || contacts.get(&who))
        .await
        .map_err(internal)?;
    if contact.as_ref().is_some_and(|c| c.held) {
        return Err(CtlError::new(
            ErrorCode::KeyChanged,
            format!(
                "{user}'s key changed since you verified it: compare the safety number \
                 (p2pctl verify {user}), then p2pctl trust {user}. Nothing was sent"
            ),
        ));
    }
    let session = daemon.peers.session_ref(&user);
    if session.is_none() && (now || contact.is_none()) {
        let why = if now {
            "--now does not queue"
        } else {
            "they are not a contact yet"
        };
        return Err(CtlError::new(
            ErrorCode::NoSession,
            format!("no session with {user} ({why}); run p2pctl connect {user}. Nothing was sent"),
        ));
    }
    let delivery = daemon
        .outbox
        .submit(&user, texts, session, now)
        .await
        .map_err(internal)?;
    Ok(Box::pin(async move {
        let sent = delivery.await.map_err(internal)?;
        answer(user, sent, now)
    }))
}

/// The answer to a `send` whose messages stand as `sent` says.
fn answer(user: String, sent: Vec<(u64, Status)>, now: bool) -> Result<SentList, CtlError> {
    let failed = sent.iter().filter(|(_, s)| *s == Status::Failed).count();
    if now && failed > 0 {
        let delivered = sent.len() - failed;
        return Err(CtlError::new(
            ErrorCode::NoSession,
            format!(
                "the session with {user} ended: {delivered} of {} messages delivered; \
                 the rest failed and were not queued (--now)",
                sent.len()
            ),
        ));
    }
    Ok(SentList {
        sent: sent
            .into_iter()
            .map(|(id, status)| SentMessage {
                to: user.clone(),
                id,
                status: match status {
                    Status::Delivered => SendStatus::Delivered,
                    Status::Queued => SendStatus::Queued,
                    Status::Failed => SendStatus::Failed,
                },
            })
            .collect(),
    })
}
