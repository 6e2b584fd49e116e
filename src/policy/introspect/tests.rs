//! The lookup with a stand-in transport: single flight, fail closed, TTL from `exp`.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;

struct Server {
    calls: Cell<usize>,
    answer: Option<(u16, &'static str)>,
}

impl Transport for Server {
    async fn post(
        &self,
        _policy: &Introspect,
        body: &[u8],
        _deadline: Instant,
    ) -> Option<(u16, bytes::Bytes)> {
        assert!(body.starts_with(b"token=t%2Bk&token_type_hint=access_token"));
        self.calls.set(self.calls.get() + 1);
        let answer = self
            .answer
            .map(|(s, b)| (s, bytes::Bytes::from_static(b.as_bytes())));
        answer
    }
}

fn policy(negative: Duration) -> Arc<Introspect> {
    Arc::new(Introspect {
        name: "i".into(),
        realm: "r".into(),
        group: UpstreamId(0),
        path: "/introspect".into(),
        headers: Vec::new(),
        token_type_hint: Some("access_token".into()),
        timeout: Duration::from_secs(1),
        cache_ttl: Duration::from_secs(30),
        negative_cache_ttl: negative,
        max_cache_entries: 100,
        consumer_claim: "sub".into(),
        groups_claim: None,
        forward_claims: Vec::new(),
        forwarding: Forwarding::default(),
        consumers: Arc::new(Consumers::default()),
        hide_credentials: false,
        token_url: None,
    })
}

fn lookup(p: &Arc<Introspect>, state: &PolicyState) -> Lookup {
    let token = b"t+k";
    let key = state.introspections.key(Arc::as_ptr(p) as usize, token);
    let digest: [u8; 32] = Sha256::digest(token).into();
    let found = state.introspections.find(key, &digest, Instant::now());
    Lookup {
        policy: Arc::clone(p),
        key,
        digest,
        token: token.to_vec().into(),
        found,
    }
}

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}

#[test]
fn lookups_of_one_token_share_one_call_and_its_cached_result() {
    let state = PolicyState::default();
    let server = Server {
        calls: Cell::new(0),
        answer: Some((200, r#"{"active":true,"sub":"alice","scope":"read write"}"#)),
    };
    let p = policy(Duration::ZERO);
    let first = lookup(&p, &state);
    let second = lookup(&p, &state);
    assert!(matches!(second.found, Found::Wait(_)));
    let mut waiting = pin!(second.resolve(&state, &server));
    assert!(waiting
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending());
    let done = ready(first.resolve(&state, &server));
    let mut identity = Identity::default();
    done.complete(&mut identity).expect("active");
    assert_eq!(identity.consumer_name(), Some("alice"));
    assert!(identity.token().is_some_and(|t| t.has_scope("write")));
    let Poll::Ready(joined) = waiting
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    else {
        panic!("the waiter was not released");
    };
    assert!(matches!(joined.outcome, Outcome::Active(_)));
    assert!(matches!(
        lookup(&p, &state).found,
        Found::Hit(Outcome::Active(_))
    ));
    assert_eq!(server.calls.get(), 1);
}

#[test]
fn no_usable_answer_fails_closed_and_is_not_cached() {
    let state = PolicyState::default();
    let p = policy(Duration::from_secs(5));
    for answer in [None, Some((500, "{}")), Some((200, "not json"))] {
        let server = Server {
            calls: Cell::new(0),
            answer,
        };
        let done = ready(lookup(&p, &state).resolve(&state, &server));
        let denial = done
            .complete(&mut Identity::default())
            .expect_err("refused");
        assert_eq!(denial.status, 503);
        assert_eq!(server.calls.get(), 1);
    }
    assert!(state.introspections.is_empty());
}

#[test]
fn inactive_and_expired_tokens_are_refused_and_briefly_remembered() {
    let state = PolicyState::default();
    let p = policy(Duration::from_secs(5));
    let server = Server {
        calls: Cell::new(0),
        answer: Some((200, r#"{"active":true,"exp":1}"#)),
    };
    let done = ready(lookup(&p, &state).resolve(&state, &server));
    assert_eq!(
        done.complete(&mut Identity::default())
            .map_err(|d| d.status),
        Err(401)
    );
    assert!(matches!(
        lookup(&p, &state).found,
        Found::Hit(Outcome::Inactive)
    ));
}

#[test]
fn the_ttl_is_capped_by_exp() {
    let p = policy(Duration::ZERO);
    let now = 1_000;
    let body = bytes::Bytes::from_static(br#"{"active":true,"exp":1010}"#);
    let (outcome, ttl) = p.read_answer(Some((200, body)), now);
    assert!(matches!(outcome, Outcome::Active(_)));
    assert_eq!(ttl, Duration::from_secs(10));
    let body = bytes::Bytes::from_static(br#"{"active":true}"#);
    assert_eq!(
        p.read_answer(Some((200, body)), now).1,
        Duration::from_secs(30)
    );
}

#[test]
fn a_dropped_leader_leaves_the_lookup_to_the_next_request() {
    let state = PolicyState::default();
    let p = policy(Duration::ZERO);
    let leader = lookup(&p, &state);
    let waiter = lookup(&p, &state);
    drop(leader);
    let server = Server {
        calls: Cell::new(0),
        answer: Some((200, r#"{"active":true}"#)),
    };
    let done = ready(waiter.resolve(&state, &server));
    assert!(matches!(done.outcome, Outcome::Active(_)));
    assert_eq!(server.calls.get(), 1);
}
