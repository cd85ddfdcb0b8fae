//! The store's contract, run on each backend: SQLite (a temp file) and
//! PostgreSQL (a private server per test, `common::postgres`). Every test
//! body is written once and run on both, so that the one SQL text the
//! store sends means the same thing to each.

mod common;

use std::time::Duration;

use common::postgres::Postgres;
use softphone_protocol::{CallDirection, CallQuality, CallRecord, EndReason, UserRef};
use switchboard::acd::Strategy;
use switchboard::store::{
    CdrWrite, CdrWriter, Database, NodeRun, QueueSpec, Role, TokenRefusal, verify_password,
};
use switchboard::{Error, Store, now_ms};

/// Runs each named `async fn(Store)` once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::Store::open(dir.path()).await.unwrap();
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let pg = super::Postgres::start();
                    let url = pg.create_database("switchboard").await;
                    let db = super::Database::parse(&url).unwrap();
                    let store = super::Store::connect(&db).await.unwrap();
                    super::$name(store.clone()).await;
                    store.close().await;
                }
            )*
        }
    };
}

on_both_backends!(
    users_sessions_and_tokens,
    call_records_map_every_column_from_each_side,
    unfinished_calls_are_failed_on_recovery,
    logins_end_on_logout_and_disable_not_on_expiry_or_refresh,
    bulk_adds_are_all_or_nothing_and_the_directory_ignores_case,
    history_pages_follow_the_cursor_newest_first,
    migrations_run_again_on_an_open_database,
    queues_and_their_members_are_kept_per_tenant,
);

async fn users_sessions_and_tokens(store: Store) {
    store.add_tenant("acme").await.unwrap();
    assert!(matches!(
        store.add_tenant("acme").await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.add_tenant("bad name").await,
        Err(Error::Invalid(_))
    ));
    let uid = store
        .add_user("acme", "alice", "Alice", "correct horse")
        .await
        .unwrap();
    assert!(matches!(
        store.add_user("acme", "bob", "Bob", "short").await,
        Err(Error::Invalid(_))
    ));
    let c = store
        .login_candidate("acme", "alice")
        .await
        .unwrap()
        .unwrap();
    assert!(verify_password("correct horse".into(), Some(c.password_hash.clone())).await);
    assert!(!verify_password("wrong horse".into(), Some(c.password_hash)).await);

    let (token, _) = store
        .create_session(uid, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(token.len(), 43);
    let who = store.resolve_token(&token).await.unwrap().unwrap();
    assert_eq!(who.user.user, "alice");
    assert_eq!(who.tenant, "acme");

    let (short, _) = store.create_session(uid, Duration::ZERO).await.unwrap();
    assert_eq!(
        store.resolve_token(&short).await.unwrap(),
        Err(TokenRefusal::Expired)
    );
    assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);

    store.set_disabled("acme", "alice", true).await.unwrap();
    assert_eq!(
        store.resolve_token(&token).await.unwrap(),
        Err(TokenRefusal::Unknown)
    );
    assert!(
        store
            .find_user(who.tenant_id, "alice")
            .await
            .unwrap()
            .is_none()
    );
}

async fn call_records_map_every_column_from_each_side(store: Store) {
    let t = store.add_tenant("acme").await.unwrap();
    let a = store
        .add_user("acme", "a", "Ann", "password1")
        .await
        .unwrap();
    let b = store
        .add_user("acme", "b", "Ben", "password1")
        .await
        .unwrap();
    let (mut q, mut committed, task) = CdrWriter::start(store.clone(), || {});
    let writes = [
        CdrWrite::Created {
            call_id: "c1".into(),
            tenant_id: t,
            caller_id: a,
            callee_id: b,
            caller_endpoint: "da".into(),
            at_ms: 1_000,
        },
        CdrWrite::Ringing {
            call_id: "c1".into(),
            at_ms: 1_100,
        },
        CdrWrite::Answered {
            call_id: "c1".into(),
            endpoint: "db".into(),
            agent: None,
            at_ms: 2_000,
        },
        CdrWrite::Quality {
            call_id: "c1".into(),
            user_id: a,
            quality: CallQuality {
                mos: Some(4.2),
                rtt_ms: Some(12.5),
                ..CallQuality::default()
            },
            at_ms: 9_000,
        },
        CdrWrite::Ended {
            call_id: "c1".into(),
            at_ms: 7_000,
            reason: EndReason::Failed,
            by: None,
        },
    ];
    let mut last = 0;
    for (i, w) in writes.into_iter().enumerate() {
        last = q.push(i as u64 + 1, w);
    }
    committed.wait_for(|c| *c >= last).await.unwrap();
    drop(q);
    task.await.unwrap();

    let out = store.call_of(a, "c1").await.unwrap().unwrap();
    assert_eq!(
        out,
        CallRecord {
            call_id: "c1".into(),
            queue: None,
            wait_ms: None,
            direction: CallDirection::Outgoing,
            caller: UserRef {
                user: "a".into(),
                display_name: "Ann".into()
            },
            callee: UserRef {
                user: "b".into(),
                display_name: "Ben".into()
            },
            answered_device: Some("db".into()),
            created_at_ms: 1_000,
            ringing_at_ms: Some(1_100),
            answered_at_ms: Some(2_000),
            ended_at_ms: Some(7_000),
            duration_ms: Some(5_000),
            end_reason: Some(EndReason::Failed),
            ended_by: None,
            missed: false,
            caller_quality: Some(CallQuality {
                mos: Some(4.2),
                rtt_ms: Some(12.5),
                ..CallQuality::default()
            }),
            callee_quality: None,
        }
    );
    let incoming = store.call_of(b, "c1").await.unwrap().unwrap();
    assert_eq!(incoming.direction, CallDirection::Incoming);
    assert!(!incoming.missed, "answered, so not missed");
    let (page, next) = store.calls_of(b, None, 10).await.unwrap();
    assert_eq!((page, next), (vec![incoming], None));
    assert!(store.call_of(a, "other").await.unwrap().is_none());
}

/// Writes an answered, unfinished call `id` (created 10 s ago, answered
/// 9 s ago) through a CDR writer on `store`.
async fn open_call(store: &Store, id: &str, t: i64, a: i64, b: i64) {
    let (mut q, mut committed, task) = CdrWriter::start(store.clone(), || {});
    let now = now_ms();
    q.push(
        1,
        CdrWrite::Created {
            call_id: id.into(),
            tenant_id: t,
            caller_id: a,
            callee_id: b,
            caller_endpoint: "d".into(),
            at_ms: now - 10_000,
        },
    );
    let seq = q.push(
        2,
        CdrWrite::Answered {
            call_id: id.into(),
            endpoint: "db".into(),
            agent: None,
            at_ms: now - 9_000,
        },
    );
    committed.wait_for(|c| *c >= seq).await.unwrap();
    drop(q);
    task.await.unwrap();
}

async fn unfinished_calls_are_failed_on_recovery(store: Store) {
    let t = store.add_tenant("acme").await.unwrap();
    let a = store.add_user("acme", "a", "A", "password1").await.unwrap();
    let b = store.add_user("acme", "b", "B", "password1").await.unwrap();
    let failed = |id: &'static str| {
        let store = store.clone();
        async move {
            let rec = store.call_of(a, id).await.unwrap().unwrap();
            (rec.end_reason == Some(EndReason::Failed)).then(|| rec.duration_ms.unwrap())
        }
    };

    // A call of a server older than the node table (no node run): failed
    // at startup, ending now (no heartbeat of that server is stored).
    open_call(&store, "legacy", t, a, b).await;
    assert_eq!(store.recover_unfinished_calls().await.unwrap(), 1);
    let d = failed("legacy").await.expect("failed");
    assert!((8_900..=10_000).contains(&d), "duration {d}");
    assert_eq!(store.recover_unfinished_calls().await.unwrap(), 0);

    // Nodes x and y each route a call.
    let x = NodeRun::new("x");
    let y = NodeRun::new("y");
    for (node, id) in [(&x, "on-x"), (&y, "on-y")] {
        assert!(!store.node_heartbeat(node).await.unwrap(), "registers");
        assert!(store.node_heartbeat(node).await.unwrap(), "was there");
        open_call(&store.clone().for_node(node), id, t, a, b).await;
    }
    let long_ago = now_ms() - 60_000;
    // Live nodes are left alone, whoever sweeps; the legacy sweep does not
    // touch calls of node runs.
    assert_eq!(
        store
            .fail_calls_of_gone_nodes(&y, long_ago, true)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.recover_unfinished_calls().await.unwrap(), 0);
    assert_eq!(failed("on-x").await, None);

    // x restarts (a new run of its name): only its start-up sweep takes
    // the earlier run of its name for gone; a periodic sweep does not, so
    // two live runs of one name would not end each other's calls forever.
    let x2 = NodeRun::new("x");
    assert_eq!(
        store
            .fail_calls_of_gone_nodes(&x2, long_ago, false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(failed("on-x").await, None);
    // At its start, the earlier run's call fails at once, ending at that
    // run's last heartbeat.
    assert_eq!(
        store
            .fail_calls_of_gone_nodes(&x2, long_ago, true)
            .await
            .unwrap(),
        1
    );
    let d = failed("on-x").await.expect("x's call failed");
    assert!((8_900..=10_000).contains(&d), "duration {d}");
    assert_eq!(failed("on-y").await, None, "y is alive");

    // y goes silent: once its heartbeat is stale, any node's sweep fails
    // its call, once.
    let after_y = now_ms() + 1;
    assert_eq!(
        store
            .fail_calls_of_gone_nodes(&x2, after_y, false)
            .await
            .unwrap(),
        1
    );
    assert!(failed("on-y").await.is_some());
    // y comes back: its heartbeat finds its row gone and says so.
    assert!(!store.node_heartbeat(&y).await.unwrap());
    assert_eq!(
        store
            .fail_calls_of_gone_nodes(&x2, after_y, false)
            .await
            .unwrap(),
        0
    );
}

async fn logins_end_on_logout_and_disable_not_on_expiry_or_refresh(store: Store) {
    store.add_tenant("acme").await.unwrap();
    let a = store
        .add_user("acme", "ann", "Ann", "password1")
        .await
        .unwrap();
    let b = store
        .add_user("acme", "ben", "Ben", "password1")
        .await
        .unwrap();
    let (ta, _) = store
        .create_session(a, Duration::from_secs(60))
        .await
        .unwrap();
    let (tb, _) = store
        .create_session(b, Duration::from_secs(60))
        .await
        .unwrap();
    let (tx, _) = store.create_session(b, Duration::ZERO).await.unwrap();
    let login_a = store.resolve_token(&ta).await.unwrap().unwrap().login_id;
    let login_b = store.resolve_token(&tb).await.unwrap().unwrap().login_id;
    assert_eq!(login_a.len(), 32);
    assert_ne!(login_a, login_b);

    // A refresh rotates the token and keeps the login.
    let (ta2, exp) = store
        .refresh_session(&ta, Duration::from_secs(120))
        .await
        .unwrap()
        .expect("a live token refreshes");
    assert!(exp > now_ms() + 60_000);
    assert_eq!(
        store.resolve_token(&ta).await.unwrap(),
        Err(TokenRefusal::Unknown)
    );
    let again = store.resolve_token(&ta2).await.unwrap().unwrap();
    assert_eq!(again.login_id, login_a);
    assert!(
        store
            .refresh_session(&ta, Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );

    // Expiry and purging end no login.
    assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);
    assert_eq!(
        store.resolve_token(&tx).await.unwrap(),
        Err(TokenRefusal::Unknown)
    );
    let ids = vec![login_a.clone(), login_b.clone(), "0".repeat(32)];
    assert!(store.ended_logins(&ids).await.unwrap().is_empty());

    // Logout ends Ann's login; disabling Ben ends his; twice is harmless.
    store.revoke(&ta2).await.unwrap();
    store.revoke(&ta2).await.unwrap();
    let ended = store.ended_logins(&ids).await.unwrap();
    assert_eq!(ended.into_iter().collect::<Vec<_>>(), vec![login_a.clone()]);
    store.set_disabled("acme", "ben", true).await.unwrap();
    store.set_disabled("acme", "ben", true).await.unwrap();
    let mut ended: Vec<String> = store
        .ended_logins(&ids)
        .await
        .unwrap()
        .into_iter()
        .collect();
    ended.sort();
    let mut want = vec![login_a, login_b];
    want.sort();
    assert_eq!(ended, want);
    assert_eq!(
        store.resolve_token(&tb).await.unwrap(),
        Err(TokenRefusal::Unknown)
    );
    assert!(matches!(
        store.set_disabled("acme", "nobody", true).await,
        Err(Error::NotFound(_))
    ));

    // More ids than one query binds (chunks of 500).
    let many: Vec<String> = (0..1_203).map(|i| format!("{i:032x}")).collect();
    assert!(store.ended_logins(&many).await.unwrap().is_empty());
}

async fn bulk_adds_are_all_or_nothing_and_the_directory_ignores_case(store: Store) {
    let t = store.add_tenant("acme").await.unwrap();
    let other = store.add_tenant("globex").await.unwrap();
    assert_ne!(t, other);
    let hash = switchboard::store::hash_password("password1".into())
        .await
        .unwrap();
    let users: Vec<(String, String)> = [("alice", "Alice Martin"), ("bob", "Bob Stone")]
        .iter()
        .map(|(u, d)| (u.to_string(), d.to_string()))
        .collect();
    let ids = store.add_users_hashed("acme", &users, &hash).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids[1] > ids[0]);

    // A taken name fails the whole batch: carol is not added either.
    let clash: Vec<(String, String)> = [("carol", "Carol King"), ("alice", "Alice Again")]
        .iter()
        .map(|(u, d)| (u.to_string(), d.to_string()))
        .collect();
    assert!(matches!(
        store.add_users_hashed("acme", &clash, &hash).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.find_user(t, "carol").await.unwrap().is_none());
    assert!(matches!(
        store.add_users_hashed("nope", &users, &hash).await,
        Err(Error::NotFound(_))
    ));
    // The same name in another tenant is another user.
    store
        .add_user("globex", "alice", "Alice of Globex", "password1")
        .await
        .unwrap();

    let names = |v: Vec<switchboard::store::Callee>| -> Vec<String> {
        v.into_iter().map(|c| c.user.user).collect()
    };
    assert_eq!(
        names(store.directory(t, "ALI", 10).await.unwrap()),
        ["alice"]
    );
    assert_eq!(
        names(store.directory(t, "stone", 10).await.unwrap()),
        ["bob"]
    );
    assert_eq!(
        names(store.directory(t, "", 10).await.unwrap()),
        ["alice", "bob"]
    );
    assert_eq!(names(store.directory(t, "", 1).await.unwrap()), ["alice"]);
    assert_eq!(
        names(store.directory(t, "%", 10).await.unwrap()),
        ["alice", "bob"]
    );

    store.set_disabled("acme", "bob", true).await.unwrap();
    assert_eq!(names(store.directory(t, "", 10).await.unwrap()), ["alice"]);
    let listed: Vec<(String, String, bool)> = store
        .list_users(None)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.tenant, u.username, u.disabled))
        .collect();
    assert_eq!(
        listed,
        [
            ("acme".to_string(), "alice".to_string(), false),
            ("acme".to_string(), "bob".to_string(), true),
            ("globex".to_string(), "alice".to_string(), false),
        ]
    );
    assert_eq!(store.list_users(Some("globex")).await.unwrap().len(), 1);
    store.set_disabled("acme", "bob", false).await.unwrap();
    assert!(store.find_user(t, "bob").await.unwrap().is_some());
    assert_eq!(store.list_tenants().await.unwrap(), ["acme", "globex"]);
}

async fn history_pages_follow_the_cursor_newest_first(store: Store) {
    let t = store.add_tenant("acme").await.unwrap();
    let a = store
        .add_user("acme", "a", "Ann", "password1")
        .await
        .unwrap();
    let b = store
        .add_user("acme", "b", "Ben", "password1")
        .await
        .unwrap();
    let c = store
        .add_user("acme", "c", "Cid", "password1")
        .await
        .unwrap();
    let (mut q, mut committed, task) = CdrWriter::start(store.clone(), || {});
    let mut seq = 0;
    // Five calls of Ann's, two of them at the same millisecond, one that
    // does not involve her.
    let calls = [
        ("k1", 1_000, b),
        ("k2", 2_000, b),
        ("k3", 3_000, b),
        ("k4", 3_000, b),
        ("k5", 4_000, b),
    ];
    for (id, at, callee) in calls.iter().copied().chain([("x1", 5_000, c)]) {
        let caller = if id == "x1" { b } else { a };
        seq += 1;
        q.push(
            seq,
            CdrWrite::Created {
                call_id: id.into(),
                tenant_id: t,
                caller_id: caller,
                callee_id: callee,
                caller_endpoint: "d".into(),
                at_ms: at,
            },
        );
        seq += 1;
        q.push(
            seq,
            CdrWrite::Ended {
                call_id: id.into(),
                at_ms: at + 500,
                reason: EndReason::NoAnswer,
                by: None,
            },
        );
    }
    committed.wait_for(|n| *n >= seq).await.unwrap();
    drop(q);
    task.await.unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store.calls_of(a, cursor.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|r| r.call_id.clone()));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["k5", "k4", "k3", "k2", "k1"]);
    let missed = store.call_of(b, "k1").await.unwrap().unwrap();
    assert!(missed.missed, "an unanswered incoming call is missed");
    assert_eq!(missed.duration_ms, Some(0));
    assert!(
        store.call_of(a, "x1").await.unwrap().is_none(),
        "not Ann's call"
    );
    assert!(store.call_exists("x1").await.unwrap());
    assert!(store.is_party(c, "x1").await.unwrap());
    assert!(!store.is_party(a, "x1").await.unwrap());
    assert!(matches!(
        store.calls_of(a, Some("junk"), 2).await,
        Err(Error::Invalid(_))
    ));
}

async fn migrations_run_again_on_an_open_database(store: Store) {
    store.add_tenant("acme").await.unwrap();
    // A second store on the same database (another node, the admin CLI)
    // finds the migrations applied and the data there.
    let again = Store::connect(store.database()).await.unwrap();
    assert_eq!(again.list_tenants().await.unwrap(), ["acme"]);
    again.close().await;
}

async fn queues_and_their_members_are_kept_per_tenant(store: Store) {
    let acme = store.add_tenant("acme").await.unwrap();
    let globex = store.add_tenant("globex").await.unwrap();
    for u in ["alice", "bob"] {
        store.add_user("acme", u, u, "password1").await.unwrap();
    }
    let support = QueueSpec {
        number: Some("2001".into()),
        strategy: Strategy::RingAll,
        ring_secs: 15,
        hours: Some("mon-fri 09:00-18:00".into()),
        timezone: Some("Europe/Paris".into()),
        closed_message: Some("Closed; call back tomorrow".into()),
        ..QueueSpec::named("support")
    };
    store.add_queue(acme, &support).await.unwrap();
    // Names and numbers are unique among queues and users of a tenant, not
    // across tenants.
    let taken = |spec: QueueSpec| {
        let store = store.clone();
        async move { store.add_queue(acme, &spec).await }
    };
    assert!(matches!(
        taken(QueueSpec::named("support")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        taken(QueueSpec::named("alice")).await,
        Err(Error::Conflict(_))
    ));
    let same_number = QueueSpec {
        number: Some("2001".into()),
        ..QueueSpec::named("sales")
    };
    assert!(matches!(taken(same_number).await, Err(Error::Conflict(_))));
    let bad_overflow = QueueSpec {
        overflow_queue: Some("nope".into()),
        ..QueueSpec::named("sales")
    };
    assert!(matches!(taken(bad_overflow).await, Err(Error::Invalid(_))));
    let bad_ring = QueueSpec {
        ring_secs: 1,
        ..QueueSpec::named("sales")
    };
    assert!(matches!(taken(bad_ring).await, Err(Error::Invalid(_))));
    store
        .add_queue(globex, &QueueSpec::named("support"))
        .await
        .unwrap();

    // Members, idempotent both ways.
    for u in ["bob", "alice", "alice"] {
        store
            .set_queue_member(acme, "support", u, true)
            .await
            .unwrap();
    }
    assert!(matches!(
        store
            .set_queue_member(acme, "support", "mallory", true)
            .await,
        Err(Error::NotFound(_))
    ));
    let q = store.queue(acme, "support").await.unwrap().unwrap();
    assert_eq!(q.spec, support);
    assert_eq!(q.members, ["alice", "bob"]);
    store
        .set_queue_member(acme, "support", "bob", false)
        .await
        .unwrap();
    store
        .set_queue_member(acme, "support", "bob", false)
        .await
        .unwrap();

    // Overflow, replace (renaming keeps members), removal.
    let sales = QueueSpec {
        overflow_queue: Some("support".into()),
        ..QueueSpec::named("sales")
    };
    store.add_queue(acme, &sales).await.unwrap();
    assert!(matches!(
        store.remove_queue(acme, "support").await,
        Err(Error::Conflict(_))
    ));
    // Nor renamed while sales overflows to it, and no overflow loops.
    let moved = QueueSpec {
        name: "moved".into(),
        ..support.clone()
    };
    assert!(matches!(
        store.replace_queue(acme, "support", &moved).await,
        Err(Error::Conflict(_))
    ));
    let looped = QueueSpec {
        overflow_queue: Some("sales".into()),
        ..support.clone()
    };
    assert!(matches!(
        store.replace_queue(acme, "support", &looped).await,
        Err(Error::Invalid(m)) if m.contains("loop")
    ));
    // A new user may not take a queue's name or number.
    for taken in ["sales", "2001"] {
        assert!(matches!(
            store.add_user("acme", taken, "X", "password1").await,
            Err(Error::Conflict(_))
        ));
    }
    let renamed = QueueSpec {
        name: "help".into(),
        wrap_up_secs: 0,
        ..support.clone()
    };
    assert!(matches!(
        store
            .replace_queue(acme, "support", &QueueSpec::named("sales"))
            .await,
        Err(Error::Conflict(_))
    ));
    store
        .add_queue(acme, &QueueSpec::named("spare"))
        .await
        .unwrap();
    store
        .replace_queue(
            acme,
            "spare",
            &QueueSpec {
                name: "spare".into(),
                lapse_limit: 5,
                ..QueueSpec::named("spare")
            },
        )
        .await
        .unwrap();
    store.remove_queue(acme, "spare").await.unwrap();
    assert!(matches!(
        store.remove_queue(acme, "spare").await,
        Err(Error::NotFound(_))
    ));
    let sales_only = QueueSpec {
        overflow_queue: None,
        ..sales.clone()
    };
    store
        .replace_queue(acme, "sales", &sales_only)
        .await
        .unwrap();
    store
        .replace_queue(acme, "support", &renamed)
        .await
        .unwrap();
    let names: Vec<String> = store
        .queues(acme)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.spec.name)
        .collect();
    assert_eq!(names, ["help", "sales"]);
    assert_eq!(
        store.queue(acme, "help").await.unwrap().unwrap().members,
        ["alice"]
    );
    assert_eq!(store.queues(globex).await.unwrap().len(), 1);

    // Roles reach the resolved token.
    let alice = store
        .find_user(acme, "alice")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let (token, _) = store
        .create_session(alice, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.resolve_token(&token).await.unwrap().unwrap().role,
        Role::Agent
    );
    store.set_role("acme", "alice", Role::Admin).await.unwrap();
    assert_eq!(
        store.resolve_token(&token).await.unwrap().unwrap().role,
        Role::Admin
    );
    assert!(matches!(
        store.set_role("acme", "zed", Role::Admin).await,
        Err(Error::NotFound(_))
    ));
}
