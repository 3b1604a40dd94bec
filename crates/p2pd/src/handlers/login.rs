//! `login` and `register`: hand the credentials to the link and report its
//! first attempt (SPEC §6: 0 once online; busy/unreachable is an error but
//! the daemon keeps trying; a wrong password stops it).

use p2p_proto::ctl::{CtlError, ErrorCode, LoginArgs, LoginDone};
use p2p_proto::names::{validate_password, validate_username};
use tokio::sync::oneshot;

use crate::link::LinkCmd;
use crate::Daemon;

/// Logs in (or registers) and waits for the first attempt's outcome.
pub(crate) async fn run(
    daemon: &Daemon,
    mut args: LoginArgs,
    register: bool,
) -> Result<LoginDone, CtlError> {
    args.server = p2p_proto::address::parse_server_list(&args.server)
        .map_err(|e| CtlError::new(ErrorCode::BadRequest, format!("server: {e}")))?;
    validate_username(&args.user)
        .map_err(|e| CtlError::new(ErrorCode::BadRequest, e.to_string()))?;
    if register {
        validate_password(args.password.expose())
            .map_err(|e| CtlError::new(ErrorCode::BadRequest, e.to_string()))?;
    }
    if let Some(fp) = &args.fingerprint {
        if p2p_proto::Fingerprint::parse(fp).is_none() {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                "--fingerprint must look like SHA256:<64 hex digits>",
            ));
        }
    }
    let (reply, rx) = oneshot::channel();
    daemon
        .link
        .send(LinkCmd::Login {
            args,
            register,
            reply,
        })
        .await?;
    let done = rx
        .await
        .map_err(|_| CtlError::new(ErrorCode::Internal, "daemon is shutting down"))??;
    Ok(done)
}
