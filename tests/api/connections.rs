//! The listener under hostile clients, over raw TCP from several loopback addresses:
//! half-open connections by the thousand, heads sent a line at a time, idle keep-alive
//! connections, a full house; and heads HTTP cannot parse, which get problem bodies.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use jointeval_api::ConnectionLimits;
use jointeval_domain::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::TestApp;

/// A connection to `app` from `from` (any address of 127.0.0.0/8).
async fn connect(app: &TestApp, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind the source address");
    socket.connect(app.addr).await.expect("connect")
}

/// Everything the server sends until it closes, or what came before `within` ran out.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    // A refused connection closed before the client's bytes were read is reset.
    let closed = matches!(read, Ok(Ok(_)))
        || matches!(&read, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset);
    (out, closed)
}

/// The status and the body of one raw answer.
fn parse(answer: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn assert_problem(answer: &[u8], status: u16) -> String {
    let (got, head, body) = parse(answer);
    assert_eq!(got, status, "answer: {}", String::from_utf8_lossy(answer));
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: serde_json::Value = serde_json::from_str(&body).expect("a problem body");
    assert_eq!(problem["status"], status);
    assert!(problem["title"].is_string() && problem["detail"].is_string());
    head
}

fn limits(per_client: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(1),
        max_connections: 10_000,
        max_per_client: per_client,
    }
}

/// The probe's slow clients: thousands of connections from one address that send part
/// of a head. Past the per-address cap they are refused at once with 429; the rest are
/// closed at the header timeout; all the while another address is answered at once.
#[tokio::test]
async fn thousands_of_half_open_connections_do_not_keep_others_out() {
    const PER_CLIENT: usize = 64;
    const ATTACK: usize = 2_000;
    let app = TestApp::with_limits(limits(PER_CLIENT)).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held = Vec::new();
    let opened = Instant::now();
    for _ in 0..ATTACK {
        let mut stream = connect(&app, attacker).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: jointeval\r\n")
            .await
            .expect("a partial head");
        held.push(stream);
    }

    // Meanwhile, someone else.
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)))
        .build()
        .expect("client");
    for path in ["/healthz", "/readyz"] {
        let asked = Instant::now();
        let response = client.get(app.url(path)).send().await.expect("answer");
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{path} took {:?} under the attack",
            asked.elapsed()
        );
    }

    // Every attacking connection is closed: the refused at once with a 429 problem (or,
    // past what the service answers at once, closed without one), the admitted (no more
    // than the cap) at the header timeout with a 408 problem.
    let (mut refused, mut timed_out, mut cut) = (0, 0, 0);
    let deadline = Duration::from_secs(2) + Duration::from_secs(3);
    for stream in &mut held {
        let left = deadline.saturating_sub(opened.elapsed()) + Duration::from_millis(200);
        let (answer, closed) = read_to_close(stream, left).await;
        assert!(
            closed,
            "a connection was still open {:?} after its opening",
            opened.elapsed()
        );
        match parse(&answer).0 {
            429 => {
                let head = assert_problem(&answer, 429);
                assert!(head.contains("retry-after: "), "{head}");
                refused += 1;
            }
            408 => {
                assert_problem(&answer, 408);
                timed_out += 1;
            }
            0 if answer.is_empty() => cut += 1,
            other => panic!("answered {other}: {}", String::from_utf8_lossy(&answer)),
        }
    }
    assert_eq!(refused + timed_out + cut, ATTACK);
    assert!(timed_out <= PER_CLIENT, "{timed_out} held at once");
    assert!(
        refused >= (ATTACK - PER_CLIENT) / 2,
        "{refused} refused with an answer, {cut} cut"
    );

    // Once they are gone, the address may connect again.
    let mut again = connect(&app, attacker).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: jointeval\r\nConnection: close\r\n\r\n")
        .await
        .expect("a request");
    let (answer, _) = read_to_close(&mut again, Duration::from_secs(5)).await;
    assert_eq!(
        parse(&answer).0,
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// A head sent a line at a time, each line well within the timeout, still has to be
/// whole within it; a keep-alive connection with nothing more to ask is closed when idle.
#[tokio::test]
async fn a_head_sent_slowly_and_an_idle_keep_alive_connection_are_closed() {
    let app = TestApp::with_limits(limits(0)).await;
    let mut slow = connect(&app, Ipv4Addr::new(127, 0, 0, 4)).await;
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("request line");
    let mut lines = 0;
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        if slow
            .write_all(format!("X-Line-{lines}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
        lines += 1;
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(400), slow.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    let (rest, _) = read_to_close(&mut slow, Duration::from_secs(1)).await;
    answer.extend_from_slice(&rest);
    assert_problem(&answer, 408);
    assert!(lines >= 3, "only {lines} lines were sent");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed only after {:?}",
        started.elapsed()
    );

    // One request, then nothing: closed after the idle timeout, without an answer.
    let mut idle = connect(&app, Ipv4Addr::new(127, 0, 0, 5)).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: jointeval\r\n\r\n")
        .await
        .expect("a request");
    let answered = Instant::now();
    let (answer, closed) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "the idle connection stayed open");
    assert_eq!(parse(&answer).0, 200);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 408"),
        "an idle connection gets no answer, it is closed"
    );
    assert!(answered.elapsed() >= Duration::from_millis(900));
}

/// A full house: past the cap on connections, a new one is told so at once.
#[tokio::test]
async fn past_the_cap_on_connections_a_new_one_gets_503_at_once() {
    let app = TestApp::with_limits(ConnectionLimits {
        max_connections: 8,
        max_per_client: 0,
        ..limits(0)
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&app, Ipv4Addr::new(127, 0, 0, 6)).await);
    }
    let mut late = connect(&app, Ipv4Addr::new(127, 0, 0, 7)).await;
    let (answer, closed) = read_to_close(&mut late, Duration::from_secs(1)).await;
    assert!(closed);
    let head = assert_problem(&answer, 503);
    assert!(head.contains("retry-after: "), "{head}");
    drop(held);
}

/// What HTTP itself cannot read never gets hyper's bare 400: a NUL or a control character
/// in a header, or in the request line, on every family of routes, answers a problem; a
/// bad `Authorization` is a 401 with `WWW-Authenticate`.
#[tokio::test]
async fn unreadable_heads_get_problem_bodies_on_every_route_family() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let routes = [
        "GET /healthz",
        "GET /readyz",
        "GET /openapi.json",
        "POST /v1/auth/token",
        "GET /v1/me",
        &format!("PATCH /v1/accounts/{}", admin.id),
        "POST /v1/exchanges",
        "GET /v1/protocols",
        "POST /v1/exercises",
        "GET /v1/runs/01a2335c-a21d-73eb-b7d5-c5c27ba6ca57",
        "GET /v1/audit",
        "GET /no/such/route",
    ];
    let bad: [(&str, Vec<u8>, u16, &str); 5] = [
        (
            "a NUL in Authorization",
            b"Authorization: Bearer abc\0def\r\n".to_vec(),
            401,
            "Authorization",
        ),
        (
            "control characters in If-Match",
            b"If-Match: \x01\x02\x03\r\n".to_vec(),
            400,
            "If-Match",
        ),
        (
            "a NUL in a header name",
            format!("Authorization: Bearer {token}\r\nX-\0: 1\r\n").into_bytes(),
            400,
            "header",
        ),
        (
            "a header line without a colon",
            b"this is not a header\r\n".to_vec(),
            400,
            "header",
        ),
        (
            "a header section over the limit",
            [b"X-Large: ".as_slice(), &vec![b'a'; 600 * 1024], b"\r\n"].concat(),
            431,
            "header",
        ),
    ];
    for route in routes {
        let (method, path) = route.split_once(' ').expect("method and path");
        for (what, line, status, named) in &bad {
            let mut stream = connect(&app, Ipv4Addr::LOCALHOST).await;
            let mut request =
                format!("{method} {path} HTTP/1.1\r\nHost: jointeval\r\n").into_bytes();
            request.extend_from_slice(line);
            request.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            // The server may answer and close before it has read all of a large head.
            let _ = stream.write_all(&request).await;
            let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
            let head = assert_problem(&answer, *status);
            if *status == 401 {
                assert!(
                    head.contains(
                        r#"www-authenticate: bearer realm="jointeval", error="invalid_request""#
                    ),
                    "{route}, {what}: {head}"
                );
            }
            let (_, _, body) = parse(&answer);
            assert!(body.contains(named), "{route}, {what}: {body}");
        }
        // The request line itself.
        let mut stream = connect(&app, Ipv4Addr::LOCALHOST).await;
        stream
            .write_all(format!("{method} {path}\0 HTTP/1.1\r\nHost: jointeval\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
        let (_, _, body) = parse(&answer);
        assert_problem(&answer, 400);
        assert!(body.contains("request line"), "{route}: {body}");
    }

    // Bytes HTTP allows but a token cannot hold reach the service, which refuses them.
    let mut stream = connect(&app, Ipv4Addr::LOCALHOST).await;
    stream
        .write_all(b"GET /v1/me HTTP/1.1\r\nHost: jointeval\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    let head = assert_problem(&answer, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
}

/// Once a request's head is in, the listener's clocks stop: a body that trickles in for
/// longer than both timeouts is read to its end and answered.
#[tokio::test]
async fn a_body_sent_slowly_outlives_the_header_and_idle_timeouts() {
    let app = TestApp::with_limits(ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..limits(0)
    })
    .await;
    let body = b"grant_type=password&username=nobody%40nist.gov&password=not+the+password";
    let mut stream = connect(&app, Ipv4Addr::LOCALHOST).await;
    stream
        .write_all(
            format!(
                "POST /v1/auth/token HTTP/1.1\r\nHost: jointeval\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("head");
    let started = Instant::now();
    for chunk in body.chunks(body.len() / 6 + 1) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(chunk).await.expect("a piece of the body");
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    let (answer, _) = read_to_close(&mut stream, Duration::from_secs(10)).await;
    assert_problem(&answer, 401);
}

/// Pipelined requests are answered in order; an unreadable head among them gets its
/// problem answer after the answers before it, not one of hyper's own.
#[tokio::test]
async fn pipelined_requests_are_answered_and_an_unreadable_one_gets_a_problem() {
    let app = TestApp::spawn().await;
    let mut stream = connect(&app, Ipv4Addr::LOCALHOST).await;
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: jointeval\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: jointeval\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: jointeval\r\nIf-Match: \x01\r\n\r\n",
        )
        .await
        .expect("three requests");
    let (answer, closed) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(closed);
    let text = String::from_utf8_lossy(&answer);
    // Each answer's status line follows the JSON body of the one before.
    let starts: Vec<usize> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text[..i].ends_with('}'))
        .collect();
    let answers: Vec<&str> = starts
        .iter()
        .enumerate()
        .map(|(n, &i)| &text[i + 9..starts.get(n + 1).copied().unwrap_or(text.len())])
        .collect();
    assert_eq!(answers.len(), 3, "{text}");
    assert!(
        answers[0].starts_with("200") && answers[1].starts_with("200"),
        "{text}"
    );
    assert!(answers[2].starts_with("400"), "{text}");
    assert!(
        answers[2].contains("content-type: application/problem+json"),
        "{text}"
    );
}
