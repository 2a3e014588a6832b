//! The key of each CTI change made for a bridge request ([`pb_cti::REQUEST_KEY_HEADER`]):
//! the request's destination and requestId, and the change's place among the request's
//! CTI changes. A handler is deterministic in the calls it makes, so a redo of the same
//! request (its first attempt's replica was lost mid-way) sends the same keys, and the
//! adapter answers each as it did the first time.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

struct Request {
    base: String,
    changes: AtomicU32,
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Run `work`, the handling of request `request_id` to `target`: every CTI change it makes
/// carries a key.
pub(crate) fn scope<F: Future>(
    target: &str,
    request_id: &str,
    work: F,
) -> impl Future<Output = F::Output> {
    REQUEST.scope(
        Request {
            base: format!("{target} {request_id}"),
            changes: AtomicU32::new(0),
        },
        work,
    )
}

/// The key of the next CTI change, when one is being made for a request.
pub(crate) fn next() -> Option<String> {
    REQUEST
        .try_with(|r| format!("{} #{}", r.base, r.changes.fetch_add(1, Ordering::Relaxed)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_change_of_a_request_has_its_own_key_and_a_redo_the_same_ones() {
        let keys = || scope("a.b", "r1", async { [next(), next()] });
        let first = keys().await;
        assert_eq!(
            first,
            [Some("a.b r1 #0".to_owned()), Some("a.b r1 #1".to_owned())]
        );
        assert_eq!(keys().await, first);
        assert_eq!(next(), None, "outside a request: no key");
    }
}
