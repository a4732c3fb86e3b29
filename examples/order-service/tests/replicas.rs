//! Two order-service replicas on one PostgreSQL database, as `ORDER_SERVICE_REPLICAS=2
//! ./run.sh up` runs them: each replica has its own state (in-flight keys, breakers, pool of
//! connections) and only the store is shared. Runs when `TEST_DATABASE_URL` is set, like the
//! PostgreSQL store tests; SQLite is one process's file and is never shared by replicas.

mod support;

use std::time::Duration;

use order_service::{DegradedMode, store};
use reqwest::StatusCode;
use serde_json::Value;
use service_kit::store::testing;
use support::*;

/// One answer to `POST /orders`.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    body: Value,
}

async fn post(client: &reqwest::Client, base: &str, key: &str, body: &str) -> Answer {
    let resp = client
        .post(format!("{base}/orders"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    Answer {
        status: resp.status(),
        replayed: resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true"),
        body: resp.json().await.unwrap(),
    }
}

/// The same `Idempotency-Key` sent to both replicas at the same moment, for many keys: each
/// key makes exactly one order, and the two answers agree — one creates it, the other
/// replays that answer (or, per the idempotency contract, says 409 while the first is in
/// flight and replays it when asked again).
///
/// user-service answers after 50 ms, so both requests of a key are past their replica's
/// in-flight check (each replica has its own) and verifying the user when the first inserts:
/// only the shared store's key can stop the second order.
#[tokio::test]
async fn one_key_sent_to_two_replicas_at_once_makes_one_order() {
    let Some(store_a) = testing::postgres(&store::MIGRATIONS).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let store_b = reopen(&store_a).await;
    let users = UserInstance::start().await;
    let uid = users.user("replicas@x.io").await;
    users.faults.set_latency(Duration::from_millis(50));
    let replica = |store| {
        order_state_on(
            store,
            vec![users.url()],
            DegradedMode::Fail,
            Some(fast_stack()),
        )
    };
    let a = serve_order(replica(store_a.clone())).await;
    let b = serve_order(replica(store_b.clone())).await;
    let client = reqwest::Client::new();

    const KEYS: usize = 20;
    let mut replays_from = [0usize; 2];
    for k in 0..KEYS {
        let key = format!("replica-race-{k}");
        let body = order_body(uid, &format!("replica-{k}"));
        let (mut first, mut second) = tokio::join!(
            post(&client, &a, &key, &body),
            post(&client, &b, &key, &body)
        );
        for (answer, base) in [(&mut first, &a), (&mut second, &b)] {
            // 409: the same request is in flight; a client asks again and gets the replay.
            for _ in 0..50 {
                if answer.status != StatusCode::CONFLICT {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                *answer = post(&client, base, &key, &body).await;
            }
        }
        for answer in [&first, &second] {
            assert_eq!(answer.status, StatusCode::CREATED, "key {k}: {answer:?}");
        }
        assert_eq!(first.body, second.body, "key {k}: the answers differ");
        assert!(first.body["id"].is_i64(), "{:?}", first.body);
        assert!(
            first.replayed != second.replayed,
            "key {k}: exactly one answer is the replay ({first:?}, {second:?})"
        );
        replays_from[usize::from(second.replayed)] += 1;
    }
    // One order and one key record per key, whichever replica's connections look.
    for s in [&store_a, &store_b] {
        assert_eq!(store::count(s).await.unwrap(), KEYS as i64);
        assert_eq!(store::key_count(s).await.unwrap(), KEYS as i64);
    }
    let listed = client
        .get(format!("{b}/orders?user_id={uid}&limit=100"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(KEYS),
        "{listed}"
    );
    eprintln!(
        "replays answered by replica a: {}, by b: {}",
        replays_from[0], replays_from[1]
    );
    store_a.close().await;
    store_b.close().await;
}
