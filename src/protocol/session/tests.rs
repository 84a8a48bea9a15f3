//! Session tests: lines in, replies and actions out.

use super::*;
use crate::block::{Direction, Mode};
use std::time::Duration;

/// A session whose third-party data connections may use `networks`.
fn trusting(networks: &str) -> Session {
    let mut config = session().config;
    config.trusted_networks = crate::peers::parse_networks(networks).unwrap();
    Session::new(config)
}

fn session() -> Session {
    Session::new(SessionConfig {
        allow_anonymous: true,
        trusted_networks: Vec::new(),
        advertise_getput: true,
        peer_ip: "10.0.0.9".parse().unwrap(),
        banner: "hi".into(),
        buffers: BufferPolicy {
            target_bps: 1e9,
            host_max: 64 << 20,
            autotune_max: 4 << 20,
            automatic: true,
        },
        timeouts: Timeouts::default(),
        gsi: false,
        dcau: false,
        tls: false,
        require_tls: false,
    })
}

#[test]
fn abuf_and_automatic_buffers() {
    let mut s = session();
    s.poll_reply();
    run(&mut s, &[b"USER alice", b"PASS pw"]);
    s.set_control_rtt(50_000);
    let got = run(&mut s, &[b"ABUF", b"ABUF 100mbit", b"ABUF fast"]);
    assert_eq!(got[0], "200 ABUF 12500000 fixed (RTT 50.00 ms, 1000 Mbit/s)\r\n");
    assert_eq!(
        got[1],
        "200 ABUF 1250000 autotuning, up to 4194304 (RTT 50.00 ms, 100 Mbit/s)\r\n"
    );
    assert!(got[2].starts_with("501 "), "{}", got[2]);
    run(&mut s, &[b"PORT 10,0,0,9,4,1"]);
    s.handle_line(b"RETR /f");
    let t = take_transfer(&mut s);
    assert_eq!(
        (t.buffer_size, t.buffer_auto),
        (None, false),
        "1.25 MB: autotuning reaches it"
    );
    s.handle_transfer_done(Ok(0));

    // No SBUF/ABUF: sized automatically only where autotuning (4 MiB) falls short.
    let mut s = session();
    s.poll_reply();
    run(&mut s, &[b"USER alice", b"PASS pw"]);
    for (rtt, want) in [(50_000, Some(12_500_000)), (1_000, None)] {
        s.set_control_rtt(rtt);
        run(&mut s, &[b"PORT 10,0,0,9,4,1"]);
        s.handle_line(b"RETR /f");
        let t = take_transfer(&mut s);
        assert_eq!((t.buffer_size, t.buffer_auto), (want, want.is_some()));
        s.handle_transfer_done(Ok(0));
    }
}

/// Feeds lines and returns the wire replies they produced, answering actions as a happy
/// driver would.
fn run(s: &mut Session, lines: &[&[u8]]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        s.handle_line(line);
        while let Some(a) = s.poll_action() {
            match a {
                Action::Authenticate { user, password } => {
                    s.handle_auth((password == "pw").then_some(Access { user, writable: true }))
                }
                Action::OpenPassive { .. } => s.handle_passive(Ok("192.0.2.1:5001".parse().unwrap())),
                Action::Storage(_) => s.handle_storage(Ok(StorageDone::Done)),
                Action::Transfer(t) => {
                    if t.endpoint == DataEndpoint::Announce {
                        s.handle_listening("192.0.2.1:5001".parse().unwrap());
                    }
                    s.handle_transfer_started(false);
                    s.handle_transfer_done(Ok(3));
                }
                _ => {}
            }
        }
        while let Some(r) = s.poll_reply() {
            out.push(r.to_wire());
        }
    }
    out
}

#[test]
fn greeting_and_exact_replies_to_bad_input() {
    let mut s = session();
    assert_eq!(s.poll_reply().unwrap().to_wire(), "220 hi\r\n");
    let got = run(
        &mut s,
        &[b"FOO bar", b"RETR \xc3\x28", b"", b"PWD", b"USER", b"PASS x", b"TYPE X"],
    );
    assert_eq!(
        got,
        vec![
            "500 Unknown command 'FOO'.\r\n",
            "500 Command line is not valid UTF-8.\r\n",
            "530 Please login with USER and PASS.\r\n",
            "501 Command requires an argument.\r\n",
            "503 Login with USER first.\r\n",
            // Syntax is checked before the login state.
            "501 Unsupported type 'X'.\r\n",
        ]
    );
    s.handle_line_too_long();
    assert_eq!(s.poll_reply().unwrap().to_wire(), "500 Command line too long.\r\n");
}

#[test]
fn login_passive_and_transfer() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[b"user alice", b"PASS pw", b"PASV", b"EPSV", b"RETR /f", b"QUIT"],
    );
    assert_eq!(
        got,
        vec![
            "331 Password required for alice.\r\n",
            "230 User alice logged in.\r\n",
            "227 Entering Passive Mode (192,0,2,1,19,137)\r\n",
            "229 Entering Extended Passive Mode (|||5001|)\r\n",
            "150 Beginning transfer.\r\n",
            "226 Transfer Complete.\r\n",
            "221 Goodbye.\r\n",
        ]
    );
    assert_eq!(s.poll_action(), None);
}

#[test]
fn wrong_passwords_then_close() {
    let mut s = session();
    s.poll_reply();
    for i in 1..=MAX_LOGIN_FAILURES {
        let got = run(&mut s, &[b"USER bob", b"PASS no"]);
        let last = got.last().unwrap();
        if i < MAX_LOGIN_FAILURES {
            assert_eq!(last, "530 Login incorrect.\r\n");
        } else {
            assert_eq!(last, "421 Too many failed logins; closing connection.\r\n");
        }
    }
    assert_eq!(s.auth_penalty(), Duration::from_secs(8));
    assert!(run(&mut s, &[b"NOOP"]).is_empty(), "closed sessions stay silent");
}

#[test]
fn abort_during_transfer_gives_426_then_226() {
    let mut s = session();
    run(&mut s, &[b"USER anonymous", b"PASS x", b"PASV"]);
    s.handle_line(b"RETR /f");
    assert!(matches!(s.poll_action(), Some(Action::Transfer(_))));
    s.handle_transfer_started(false);
    s.handle_line(b"ABOR");
    assert_eq!(s.poll_action(), Some(Action::Abort));
    s.handle_transfer_done(Err(SessionError::Aborted));
    let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
    assert_eq!(
        replies,
        vec![
            "150 Beginning transfer.\r\n",
            "426 Transfer aborted.\r\n",
            "226 Abort successful.\r\n"
        ]
    );
}

#[test]
fn anonymous_port_bounce_and_write_refused() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[
            b"USER ftp",
            b"PASS x",
            b"PORT 10,0,0,8,4,1",
            b"PORT 10,0,0,9,0,80",
            b"PORT 10,0,0,9,4,1",
            b"DELE f",
            b"CWD /../x",
        ],
    );
    assert_eq!(
        got[2],
        "501 PORT to a host other than the client, or to a port below 1024, is refused.\r\n"
    );
    assert_eq!(got[3], got[2]);
    assert_eq!(got[4], "200 PORT Command successful.\r\n");
    assert_eq!(got[5], "550 Permission denied: this account is read-only.\r\n");
    assert_eq!(got[6], "550 Path escapes the root directory.\r\n");
}

#[test]
fn globus_mapping_without_a_security_context_is_anonymous() {
    let mut s = session();
    s.poll_reply();
    let got = run(&mut s, &[b"USER :globus-mapping:", b"PASS", b"STOR f"]);
    assert_eq!(got[1], "230 User anonymous logged in.\r\n", "{got:?}");
    assert!(
        got[2].starts_with("550 Permission denied: this account is read-only."),
        "{got:?}"
    );
    let mut config = session().config;
    config.allow_anonymous = false;
    let mut s = Session::new(config);
    let got = run(&mut s, &[b"USER :globus-mapping:"]);
    assert!(got[1].starts_with("530 "), "{got:?}");
}

#[test]
fn port_rules_hold_for_logged_in_users_unless_trusted() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[
            b"USER alice",
            b"PASS pw",
            b"PORT 10,0,0,8,4,1",
            b"EPRT |1|10.0.0.9|25|",
            b"PORT 10,0,0,9,4,1",
        ],
    );
    let got = &got[1..];
    assert!(got[1].starts_with("501 PORT to a host other"), "{got:?}");
    assert!(got[2].starts_with("501 PORT to a host other"), "{got:?}");
    assert_eq!(got[3], "200 PORT Command successful.\r\n");

    let mut s = trusting("10.0.0.0/29");
    let got = run(
        &mut s,
        &[
            b"USER ftp",
            b"PASS x",
            b"PORT 10,0,0,7,4,1",
            b"PORT 10,0,0,8,4,1",
            b"PORT 10,0,0,7,0,80",
        ],
    );
    assert_eq!(got[3], "200 PORT Command successful.\r\n", "{got:?}");
    assert!(got[4].starts_with("501 "), "{got:?}");
    assert!(got[5].starts_with("501 "), "{got:?}");
}

#[test]
fn offsets_past_off_t_are_refused() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[
            b"USER ftp",
            b"PASS x",
            b"REST 18446744073709551615",
            b"REST 9223372036854775808",
            b"REST 0-9223372036854775808",
            b"ALLO 18446744073709551615",
            b"REST 9223372036854775807",
            b"ERET P 1 1 f",
        ],
    );
    for g in &got[2..6] {
        assert!(g.starts_with("501 "), "{got:?}");
    }
    assert!(got[6].starts_with("350 "), "{got:?}");
    assert!(got[7].starts_with("501 Offset too large"), "{got:?}");
}

#[test]
fn stripe_layout_block_size_is_apart_from_the_mode_e_block_size() {
    let mut s = trusting("10.0.0.0/24");
    let got = run(
        &mut s,
        &[
            b"USER alice",
            b"PASS pw",
            b"OPTS RETR StripeLayout=Blocked;BlockSize=15;Parallelism=2,2,2;",
            b"OPTS RETR BlockSize=0;",
            b"OPTS RETR StripeLayout=Diagonal;",
            b"MODE E",
            b"SPOR 10,0,0,1,4,1 10,0,0,2,4,1",
        ],
    );
    assert_eq!(got[3], "200 OPTS Command Successful.\r\n", "{got:?}");
    assert!(got[4].starts_with("501 "), "{got:?}");
    assert!(got[5].starts_with("501 "), "{got:?}");
    s.handle_line(b"RETR /f");
    let t = take_transfer(&mut s);
    assert_eq!(t.layout, Some(StripeLayout::Blocked(15)));
    assert_eq!(t.block_size, None, "a 15-byte unit does not size the MODE E blocks");
    assert_eq!(t.parallelism, 2);
    s.handle_transfer_done(Ok(0));
    run(&mut s, &[b"OPTS RETR BlockSize=65536;", b"SPOR 10,0,0,1,4,1"]);
    s.handle_line(b"RETR /f");
    let t = take_transfer(&mut s);
    assert_eq!(
        (t.layout, t.block_size),
        (Some(StripeLayout::Blocked(65536)), Some(65536))
    );
    s.handle_transfer_done(Ok(0));
    run(&mut s, &[b"OPTS RETR StripeLayout=Partitioned;", b"SPOR 10,0,0,1,4,1"]);
    s.handle_line(b"RETR /f");
    assert_eq!(take_transfer(&mut s).layout, Some(StripeLayout::Partitioned));
}

fn take_transfer(s: &mut Session) -> TransferRequest {
    loop {
        match s.poll_action() {
            Some(Action::Transfer(t)) => return t,
            Some(_) => {}
            None => panic!("no transfer action"),
        }
    }
}

#[test]
fn mode_e_direction_rules_and_reuse() {
    let mut s = session();
    s.poll_reply();
    let got = run(&mut s, &[b"USER alice", b"PASS pw", b"MODE E", b"PASV", b"RETR /f"]);
    assert_eq!(got[2], "200 Mode set to E.\r\n");
    assert_eq!(got[4], "500 Cannot do passive retrieve in E mode.\r\n");
    let got = run(&mut s, &[b"PORT 10,0,0,9,4,1", b"STOR /f", b"APPE /f"]);
    assert_eq!(got[1], "504 Cannot store in active E mode.\r\n");

    // A first RETR opens connections (150); the next one without PORT reuses them (125).
    s.handle_line(b"OPTS RETR Parallelism=4,4,4;");
    s.handle_line(b"RETR /f");
    let t = take_transfer(&mut s);
    assert!(t.mode == crate::block::Mode::E && !t.reuse && t.parallelism == 4);
    s.handle_transfer_started(t.reuse);
    s.handle_connections_kept(Direction::Send, true);
    s.handle_transfer_done(Ok(1));
    s.handle_line(b"RETR /g");
    let t = take_transfer(&mut s);
    assert!(t.reuse);
    s.handle_transfer_started(t.reuse);
    s.handle_connections_kept(Direction::Send, true);
    s.handle_transfer_done(Ok(1));
    let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
    assert!(replies.iter().any(|r| r == "150 Beginning transfer.\r\n"));
    assert!(replies
        .iter()
        .any(|r| r == "125 Beginning transfer; reusing existing data connection.\r\n"));
    // A new PORT drops the cache.
    run(&mut s, &[b"PORT 10,0,0,9,4,2"]);
    s.handle_line(b"RETR /h");
    assert!(!take_transfer(&mut s).reuse);
}

#[test]
fn bare_put_reuses_the_connections_of_a_put() {
    let mut s = session();
    s.poll_reply();
    run(&mut s, &[b"USER alice", b"PASS pw", b"MODE E"]);
    // Without kept connections a bare PUT has no data channel.
    let got = run(&mut s, &[b"PUT path=/a;"]);
    assert_eq!(got[0], "425 Use PORT or PASV first.\r\n");
    s.handle_line(b"PUT path=/a;pasv;");
    let t = take_transfer(&mut s);
    assert_eq!(t.endpoint, DataEndpoint::Announce);
    s.handle_listening("127.0.0.1:5000".parse().unwrap());
    s.handle_transfer_started(false);
    s.handle_connections_kept(Direction::Receive, true);
    s.handle_transfer_done(Ok(1));
    s.handle_line(b"PUT path=/b;");
    let t = take_transfer(&mut s);
    assert!(t.reuse && t.endpoint == DataEndpoint::Reuse);
    s.handle_transfer_started(true);
    s.handle_connections_kept(Direction::Receive, true);
    s.handle_transfer_done(Ok(1));
    // The other direction has nothing to reuse.
    while s.poll_reply().is_some() {}
    let got = run(&mut s, &[b"GET path=/b;"]);
    assert_eq!(got[0], "425 Use PORT or PASV first.\r\n");
}

#[test]
fn spas_reply_and_spor() {
    // Stripes on other hosts: allowed only from trusted networks.
    let mut s = trusting("10.0.0.0/24");
    s.poll_reply();
    let got = run(
        &mut s,
        &[b"USER alice", b"PASS pw", b"SPAS", b"SPOR 10,0,0,1,4,1 10,0,0,2,4,1"],
    );
    assert_eq!(
        got[2],
        "229-Entering Striped Passive Mode.\r\n 192,0,2,1,19,137\r\n229 End\r\n"
    );
    assert_eq!(got[3], "200 PORT Command successful.\r\n");
    s.handle_line(b"RETR /f");
    let t = take_transfer(&mut s);
    assert_eq!(
        t.endpoint,
        DataEndpoint::Active(vec!["10.0.0.1:1025".parse().unwrap(), "10.0.0.2:1025".parse().unwrap()])
    );
}

#[test]
fn rest_ranges_allo_and_markers() {
    let mut s = session();
    s.poll_reply();
    let got = run(&mut s, &[b"USER alice", b"PASS pw", b"REST 0-10,20-30"]);
    assert_eq!(got[2], "504 Range restart needs MODE E.\r\n");
    run(&mut s, &[b"MODE E", b"PASV", b"REST 0-10,20-30", b"ALLO 100"]);
    s.handle_line(b"STOR /f");
    let t = take_transfer(&mut s);
    assert_eq!(t.skip, vec![(0, 10), (20, 30)]);
    // A range restart keeps what is in place.
    assert!(
        matches!(t.kind, TransferKind::Store { truncate: false, .. }),
        "{:?}",
        t.kind
    );
    assert_eq!(t.size_limit, Some(100));
    assert_eq!(
        s.marker_interval(Direction::Receive, Mode::E),
        Some(DEFAULT_MARKER_SECS)
    );
    assert_eq!(
        s.marker_interval(Direction::Receive, Mode::Stream),
        None,
        "as Globus: none in stream mode"
    );
    assert_eq!(s.marker_interval(Direction::Send, Mode::E), None);
    s.handle_transfer_started(false);
    let mut stored = crate::block::RangeSet::new();
    stored.insert(0, 12345);
    s.handle_progress(17_643_000_005, 12345, Some(stored));
    s.handle_transfer_done(Ok(12345));
    let replies: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
    assert_eq!(
        replies[1],
        "112-Perf Marker\r\n Timestamp:  1764300000.5\r\n Stripe Index: 0\r\n Stripe Bytes Transferred: 12345\r\n Total Stripe Count: 1\r\n112 End.\r\n"
    );
    assert_eq!(replies[2], "111 Range Marker 0-12345\r\n");
    // The next transfer has no REST ranges left, and starts the file afresh.
    s.handle_line(b"STOR /g");
    let t = take_transfer(&mut s);
    assert!(t.skip.is_empty());
    assert!(
        matches!(t.kind, TransferKind::Store { truncate: true, .. }),
        "{:?}",
        t.kind
    );
}

#[test]
fn trev_and_opts_markers() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[
            b"USER alice",
            b"PASS pw",
            b"TREV PERF 2",
            b"TREV BOGUS 1",
            b"OPTS RETR markers=7;",
        ],
    );
    assert_eq!(got[2], "200 Command Successful.\r\n");
    assert_eq!(got[3], "502 Unsupported event.\r\n");
    assert_eq!(got[4], "200 OPTS Command Successful.\r\n");
    assert_eq!(s.marker_interval(Direction::Receive, Mode::Stream), Some(2));
    assert_eq!(s.marker_interval(Direction::Send, Mode::Stream), Some(7));
    let got = run(
        &mut s,
        &[b"OPTS RETR Parallelism=0,0,0;", b"OPTS RETR Parallelism=1000;"],
    );
    assert_eq!(got[0], "501 Bad parallelism '0,0,0'.\r\n");
    assert_eq!(got[1], "200 OPTS Command Successful.\r\n");
}

#[test]
fn delayed_passive_replies_with_127_before_the_transfer() {
    let mut s = session();
    s.poll_reply();
    let got = run(
        &mut s,
        &[
            b"USER alice",
            b"PASS pw",
            b"OPTS PASV AllowDelayed=1;",
            b"PASV",
            b"RETR /f",
        ],
    );
    assert_eq!(got[3], "200 Passive delayed.\r\n");
    assert_eq!(got[4], "127 Entering Passive Mode (192,0,2,1,19,137)\r\n");
    assert_eq!(got[5], "150 Beginning transfer.\r\n");
    let got = run(&mut s, &[b"GET path=/f;pasv;", b"PUT path=/g;pasv;"]);
    assert_eq!(got[0], "127 PORT (192,0,2,1,19,137)\r\n");
    assert_eq!(got[3], "127 PORT (192,0,2,1,19,137)\r\n");
}

#[test]
fn put_as_on_the_gridftp_v2_slides_gets_its_127() {
    let mut s = session();
    s.poll_reply();
    run(&mut s, &[b"USER alice", b"PASS pw"]);
    // No closing ';' after the last parameter.
    s.handle_line(b"PUT pasv;mode=x;file=/disk/my_file");
    let t = take_transfer(&mut s);
    assert_eq!(t.endpoint, DataEndpoint::Announce);
    assert_eq!(t.mode, crate::block::Mode::X);
    s.handle_listening("127.0.0.1:5000".parse().unwrap());
    let got: Vec<String> = std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect();
    assert_eq!(got, ["127 PORT (127,0,0,1,19,136)\r\n"]);
}

fn timed(login: u64, idle: u64) -> Session {
    let mut config = session().config;
    config.timeouts = Timeouts {
        login: Duration::from_secs(login),
        idle: Duration::from_secs(idle),
    };
    let mut s = Session::new(config);
    s.poll_reply();
    s
}

fn replies(s: &mut Session) -> Vec<String> {
    std::iter::from_fn(|| s.poll_reply()).map(|r| r.to_wire()).collect()
}

#[test]
fn login_timeout_on_virtual_time() {
    let secs = Duration::from_secs;
    let mut s = timed(30, 600);
    assert_eq!(s.poll_timeout(), Some(secs(30)));
    // Commands before login do not move the login deadline.
    run(&mut s, &[b"FEAT"]);
    s.handle_activity(secs(20));
    assert_eq!(s.poll_timeout(), Some(secs(30)));
    s.handle_timeout(secs(29));
    assert!(replies(&mut s).is_empty() && s.poll_action().is_none());
    s.handle_timeout(secs(30));
    assert_eq!(replies(&mut s), ["421 Login timeout; closing control connection.\r\n"]);
    assert_eq!(s.poll_action(), Some(Action::Close));
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(secs(31));
    assert!(replies(&mut s).is_empty(), "one 421 only");
}

#[test]
fn idle_timeout_follows_the_last_command_on_virtual_time() {
    let secs = Duration::from_secs;
    let mut s = timed(30, 600);
    run(&mut s, &[b"USER alice", b"PASS pw"]);
    s.handle_activity(secs(5));
    assert_eq!(s.poll_timeout(), Some(secs(605)));
    run(&mut s, &[b"NOOP"]);
    s.handle_activity(secs(100));
    s.handle_timeout(secs(605));
    assert!(replies(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(secs(700)));
    s.handle_timeout(secs(700));
    assert_eq!(replies(&mut s), ["421 Idle timeout; closing control connection.\r\n"]);
    assert_eq!(s.poll_action(), Some(Action::Close));
    // Before login an idle limit shorter than the login one is the one that ends it.
    let mut s = timed(30, 5);
    s.handle_activity(secs(1));
    assert_eq!(s.poll_timeout(), Some(secs(6)));
    s.handle_timeout(secs(6));
    assert_eq!(replies(&mut s), ["421 Idle timeout; closing control connection.\r\n"]);
}
