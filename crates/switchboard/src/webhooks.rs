//! Delivery of the webhook outbox (docs/protocol.md §2.13): every node
//! polls the outbox, leases the events due (so that two nodes rarely send
//! the same one), POSTs each as signed JSON (one receiver's events one
//! after another, oldest first; receivers in parallel), and records the
//! outcome.
//! Failed deliveries are retried with exponential backoff (1 s, 2 s, 4 s…
//! at most 10 min apart) for 24 h after the event, then given up.
//! Delivery is at least once: a node that dies between the POST and the
//! record sends it again after the lease (30 s); receivers de-duplicate on
//! the event id.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::Delivery;
use crate::{Error, Shared, now_ms};

/// How long a node owns a delivery it started.
const LEASE_MS: u64 = 30_000;
/// Events are retried this long after they happened, ms: 24 h.
const GIVE_UP_AFTER_MS: u64 = 24 * 3600 * 1000;
/// Events read per poll.
const BATCH: u32 = 100;
/// A receiver must answer within this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` sent at `timestamp_s` (Unix
/// seconds): `t=<timestamp_s>,v1=<hex HMAC-SHA256(secret, "<timestamp_s>.<body>")>`.
/// A receiver recomputes it with its secret and refuses a timestamp
/// outside its replay window (5 minutes is usual).
pub fn signature(secret: &str, timestamp_s: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_s}.{body}").as_bytes());
    format!(
        "t={timestamp_s},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The wait before attempt `failed + 1` after `failed` failures, ms:
/// 1 s, 2 s, 4 s… at most 10 min.
pub fn backoff_ms(failed: u32) -> u64 {
    1000u64
        .saturating_mul(1u64 << failed.saturating_sub(1).min(20))
        .min(600_000)
}

/// Polls and delivers until the task is aborted.
pub(crate) async fn deliver_loop(shared: Arc<Shared>) {
    let http = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: webhooks are not delivered");
            return;
        }
    };
    let mut tick = tokio::time::interval(shared.config.webhook_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = deliver_due(&shared, &http).await {
            tracing::warn!(error = %e, "webhook delivery round failed");
        }
    }
}

async fn deliver_due(shared: &Arc<Shared>, http: &reqwest::Client) -> Result<(), Error> {
    let now = now_ms();
    let due = shared.store.due_deliveries(now, BATCH).await?;
    let mut mine = Vec::with_capacity(due.len());
    for d in due {
        if shared.store.lease_delivery(&d, now + LEASE_MS).await? {
            mine.push(d);
        }
    }
    // One receiver's events go one after another, oldest first (so that a
    // healthy receiver gets them in order); receivers are served at once.
    let mut by_receiver: std::collections::BTreeMap<String, Vec<Delivery>> = Default::default();
    for d in mine {
        by_receiver.entry(d.url.clone()).or_default().push(d);
    }
    let sends = by_receiver.into_values().map(|ds| async move {
        for d in ds {
            deliver(shared, http, d).await?;
        }
        Ok::<(), Error>(())
    });
    for r in futures_util::future::join_all(sends).await {
        r?;
    }
    Ok(())
}

async fn deliver(shared: &Arc<Shared>, http: &reqwest::Client, d: Delivery) -> Result<(), Error> {
    let body = body(shared, &d).await?;
    let ts = now_ms() / 1000;
    let sent = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-switchboard-event", &d.event_type)
        .header("x-switchboard-event-id", &d.event_id)
        .header("x-switchboard-signature", signature(&d.secret, ts, &body))
        .body(body)
        .send()
        .await;
    let error = match sent {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
        Err(e) => Some(e.to_string()),
    };
    let outcome = match &error {
        None => "delivered",
        Some(_) => "failed",
    };
    shared
        .metrics
        .webhook_deliveries
        .get_or_create(&vec![("outcome", outcome)])
        .inc();
    let retry_at = error.as_ref().and_then(|_| {
        let at = u64::try_from(d.at_ms).unwrap_or(0);
        let failed = u32::try_from(d.attempts).unwrap_or(0) + 1;
        let next = now_ms() + backoff_ms(failed);
        (next < at + GIVE_UP_AFTER_MS).then_some(next)
    });
    if let Some(e) = &error {
        tracing::info!(url = %d.url, event = %d.event_id, error = %e, "webhook delivery failed");
    }
    shared
        .store
        .delivery_attempted(d.id, error.as_deref(), retry_at)
        .await
}

/// The JSON body: the event and the call's record as it is now.
async fn body(shared: &Arc<Shared>, d: &Delivery) -> Result<String, Error> {
    let call = shared.store.call_for_tenant(&d.call_id).await?;
    let mut call = serde_json::to_value(call).unwrap_or(serde_json::Value::Null);
    if let Some(o) = call.as_object_mut() {
        // The record as the tenant sees it: no one party's point of view.
        o.remove("direction");
        o.remove("missed");
    }
    let mut event = serde_json::json!({
        "id": d.event_id,
        "type": d.event_type,
        "at_ms": d.at_ms,
        "tenant": d.tenant,
        "call": call,
    });
    if let Some(a) = &d.agent {
        event["agent"] = serde_json::Value::String(a.clone());
    }
    Ok(event.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten_minutes() {
        let waits: Vec<u64> = (1..=12).map(backoff_ms).collect();
        assert_eq!(&waits[..4], &[1000, 2000, 4000, 8000]);
        assert_eq!(waits[9], 512_000);
        assert_eq!(waits[10], 600_000);
        assert_eq!(backoff_ms(1000), 600_000);
    }
}
