//! Moving a session to a new link (see the module doc of `session`): the
//! leader's `Switch` on an adopted link, the follower's answer on an
//! offered one, and the resend above the other's `received_upto`.

use p2p_proto::ctl::SessionPath;
use p2p_proto::peer::PeerMsg;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{send, Ended, From, Got, Task, MAX_OFFERED_LINKS, RESEND_CHUNK, SWITCH_TIMEOUT};
use crate::peer::error::SessionError;
use crate::peer::noise::NoiseLink;

impl Task {
    /// The leader's new link failed before the follower answered: the
    /// session ends (its unacknowledged sends get an error).
    pub(super) async fn switch_failed(&mut self, why: String) -> Ended {
        if let Some(old) = &mut self.old {
            let _ = send(old, &[PeerMsg::Bye]).await;
        }
        let peer = self.peer.clone();
        SessionError::SwitchFailed { peer, why }.to_string()
    }

    /// A new verified link for this session (see the module doc).
    pub(super) async fn adopt(&mut self, mut link: NoiseLink, path: SessionPath) {
        let peer = &self.peer;
        if path != SessionPath::Direct
            || self.path.get() == SessionPath::Direct
            || self.switch_due.is_some()
        {
            debug!(peer = %peer, "closing an extra link: the session keeps its own");
            return; // dropping it closes it
        }
        if !self.leader {
            // The leader says which link wins, with a `Switch` on it.
            self.offered.push(link);
            if self.offered.len() > MAX_OFFERED_LINKS {
                self.offered.remove(0);
            }
            return;
        }
        let switch = PeerMsg::Switch {
            received_upto: self.received_upto,
        };
        if let Err(e) = send(&mut link, &[switch]).await {
            // Nothing moved yet: the session stays where it is.
            debug!(peer = %peer, cause = %e, "new direct link failed before the switch");
            return;
        }
        info!(peer = %peer, "switching the session to a direct link");
        self.old = Some(std::mem::replace(&mut self.link, link));
        self.switch_due = Some(Instant::now() + SWITCH_TIMEOUT);
    }

    /// Frames from a follower's offered link: a `Switch` first makes it the
    /// session's link; anything else closes it.
    pub(super) async fn offered_frames(&mut self, i: usize, got: Got) -> Result<(), Ended> {
        let msgs = match got {
            Ok(Some(msgs)) if msgs.is_empty() => return Ok(()),
            Ok(Some(msgs)) => msgs,
            Err(_) | Ok(None) => {
                self.offered.remove(i);
                return Ok(());
            }
        };
        let mut msgs = msgs.into_iter();
        let Some(PeerMsg::Switch { received_upto }) = msgs.next() else {
            debug!(peer = %self.peer, "offered link did not start with a switch; closing it");
            self.offered.remove(i);
            return Ok(());
        };
        let new = self.offered.swap_remove(i);
        self.offered.clear();
        // The old link goes now: the leader writes nothing more on it, and
        // resends on the new link whatever of it we did not store.
        self.link = new;
        self.path.set(SessionPath::Direct);
        info!(peer = %self.peer, "session switched to a direct link");
        self.out.ack(received_upto);
        let answer = PeerMsg::Switch {
            received_upto: self.received_upto,
        };
        if let Err(e) = self.resend(Some(answer)).await {
            let (peer, why) = (self.peer.clone(), e.to_string());
            return Err(SessionError::SwitchFailed { peer, why }.to_string());
        }
        self.frames(From::Current, msgs.collect()).await
    }

    /// `first` (if any), then every unacknowledged message, on the link.
    pub(super) async fn resend(&mut self, first: Option<PeerMsg>) -> Result<(), SessionError> {
        let mut all: Vec<PeerMsg> = first.into_iter().collect();
        all.extend(self.out.unacked());
        for chunk in all.chunks(RESEND_CHUNK) {
            send(&mut self.link, chunk).await?;
        }
        Ok(())
    }

    /// The leader got the follower's answer: the new link is the session's.
    pub(super) async fn finish_switch(&mut self) -> Result<(), SessionError> {
        self.switch_due = None;
        self.old = None;
        self.path.set(SessionPath::Direct);
        info!(peer = %self.peer, "session switched to a direct link");
        // What we stored from the old link while switching is acknowledged
        // here; the follower's resends of it are dropped as repeats.
        let ack = PeerMsg::Ack {
            upto: self.received_upto,
        };
        self.resend(Some(ack)).await
    }
}
