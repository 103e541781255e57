//! Real rmcp clients across two gateway nodes over one store.

mod common;

use common::*;
use serde_json::json;
use session_core::{SessionId, WorkloadId, keys};
use session_manager::ValidationPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_on_a_call_on_b_delete_on_a_b_answers_404() {
    let c = Cluster::start(ValidationPolicy::EveryAccess).await;
    let on_a = client(&c.a.url()).await;
    let sid = SessionId::parse(&on_a.session_id).unwrap();
    // The Mcp-Session-Id is our SessionId, stored with the backends' session ids.
    let rec = c.store.peek(&sid).await.unwrap().expect("stored");
    let math = WorkloadId::parse("math").unwrap();
    let math_sid = keys::backend_session(&rec.metadata, &math)
        .unwrap()
        .to_owned();
    assert_eq!(c.math.session_ids().await, vec![math_sid.clone()]);

    assert_eq!(
        text_of(&call(&on_a, "math__counter", json!({})).await.unwrap()),
        "1"
    );

    let on_b = resume(&c.b.url(), &on_a).await;
    let tools = on_b.peer().list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert!(
        names.contains(&"math__add".to_owned()) && names.contains(&"text__echo".to_owned()),
        "{names:?}"
    );
    let r = call(&on_b, "math__add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "42");
    // Same backend session through node B: the counter continues.
    assert_eq!(
        text_of(&call(&on_b, "math__counter", json!({})).await.unwrap()),
        "2"
    );
    assert_eq!(
        c.math.session_ids().await,
        vec![math_sid],
        "no second backend session"
    );

    assert_eq!(raw_delete(&c.a.url(), &on_a.session_id).await, 200);
    assert_eq!(
        raw_post(&c.b.url(), &on_a.session_id, LIST_TOOLS).await,
        404
    );
    assert_eq!(
        raw_post(&c.a.url(), &on_a.session_id, LIST_TOOLS).await,
        404
    );
    assert!(c.store.peek(&sid).await.unwrap().is_none());
    // The backend sessions were deleted with the client session, once.
    assert_eq!(c.math.open_sessions().await, 0);
    assert_eq!(c.text.open_sessions().await, 0);
    drop((on_a, on_b));
    c.stop().await;
}
