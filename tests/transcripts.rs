//! Recorded control dialogues replayed against the sans-IO session with a fake driver: no
//! sockets, no files, no clocks.

use std::collections::VecDeque;

use ringmover::protocol::session::{Access, AdatOutcome, StorageDone, StorageOp, TransferKind};
use ringmover::protocol::{Action, Session, SessionConfig};

/// Answers the session's actions the way the door would on a happy path, and records the
/// transfers it was asked to run.
fn drive(session: &mut Session, transfers: &mut Vec<TransferKind>) {
    while let Some(action) = session.poll_action() {
        match action {
            Action::Authenticate { user, password } => {
                let ok = password == "pw";
                session.handle_auth(ok.then_some(Access { user, writable: true }));
            }
            Action::OpenPassive { .. } => session.handle_passive(Ok("127.0.0.1:5000".parse().unwrap())),
            Action::Storage(StorageOp::Stat(_)) => {
                session.handle_storage(Err(ringmover::protocol::SessionError::NotFound))
            }
            Action::Storage(_) => session.handle_storage(Ok(StorageDone::Done)),
            Action::Transfer(req) => {
                if req.endpoint == ringmover::protocol::session::DataEndpoint::Announce {
                    session.handle_listening("127.0.0.1:5000".parse().unwrap());
                }
                transfers.push(req.kind);
                session.handle_transfer_started(false);
                session.handle_transfer_done(Ok(0));
            }
            Action::Adat(_) => session.handle_adat(AdatOutcome::Failed("no GSI in transcripts".into())),
            Action::DropPassive | Action::ResetData | Action::Abort | Action::Close | Action::StartTls => {}
        }
    }
}

fn replay(name: &str, text: &str) -> Vec<TransferKind> {
    let mut session = Session::new(SessionConfig {
        allow_anonymous: true,
        trusted_networks: Vec::new(),
        advertise_getput: true,
        peer_ip: "127.0.0.1".parse().unwrap(),
        banner: "test".into(),
        buffers: Default::default(),
        timeouts: Default::default(),
        gsi: false,
        dcau: false,
        tls: false,
        require_tls: false,
    });
    let mut transfers = Vec::new();
    let mut replies = VecDeque::new();
    let collect = |s: &mut Session, replies: &mut VecDeque<String>| {
        while let Some(r) = s.poll_reply() {
            replies.push_back(r.to_wire());
        }
    };
    collect(&mut session, &mut replies);
    for (n, line) in text.lines().enumerate() {
        if let Some(cmd) = line.strip_prefix("C: ") {
            session.handle_line(cmd.as_bytes());
            drive(&mut session, &mut transfers);
            collect(&mut session, &mut replies);
        } else if let Some(want) = line.strip_prefix("S: ") {
            let got = replies
                .pop_front()
                .unwrap_or_else(|| panic!("{name}:{}: no reply, wanted {want}", n + 1));
            let last = got.trim_end().rsplit("\r\n").next().unwrap_or_default().to_string();
            assert!(
                got.starts_with(&want[..3]),
                "{name}:{}: wanted {want}, got {got:?}",
                n + 1
            );
            if want.len() > 3 {
                assert_eq!(last, want, "{name}:{}", n + 1);
            }
        }
    }
    assert!(replies.is_empty(), "{name}: unexpected replies {replies:?}");
    transfers
}

#[test]
fn globus_url_copy_stream_download() {
    let t = replay(
        "guc_stream_download",
        include_str!("transcripts/guc_stream_download.txt"),
    );
    assert_eq!(
        t,
        vec![TransferKind::Retrieve {
            path: "/src.bin".into(),
            offset: 0,
            length: None
        }]
    );
}

#[test]
fn upload_then_restart_and_partial_download() {
    let t = replay("guc_upload_offsets", include_str!("transcripts/guc_upload_offsets.txt"));
    assert_eq!(
        t,
        vec![
            TransferKind::Store {
                path: "/up_stream".into(),
                offset: 0,
                append: false,
                truncate: true
            },
            TransferKind::Retrieve {
                path: "/src.bin".into(),
                offset: 5000,
                length: None
            },
            TransferKind::Retrieve {
                path: "/src.bin".into(),
                offset: 1_000_000,
                length: Some(3_000_000)
            },
        ]
    );
}
