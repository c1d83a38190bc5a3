//! Refresh-token rotation, reuse detection and its grace window.

use super::*;

#[tokio::test]
async fn refresh_rotates_and_reuse_outside_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let r1 = t.anon.refresh(&u.refresh).await;
    r1.assert_status(200);
    let rt2 = r1.str("refresh_token");
    assert_ne!(rt2, u.refresh);
    // Inside the grace window the immediate predecessor returns the same successor.
    let again = t.anon.refresh(&u.refresh).await;
    again.assert_status(200);
    assert_eq!(again.str("refresh_token"), rt2);
    let r2 = t.anon.refresh(&rt2).await;
    r2.assert_status(200);
    let rt3 = r2.str("refresh_token");
    // rt1 is no longer the immediate predecessor: reuse revokes the session.
    t.anon.refresh(&u.refresh).await.assert_problem(401);
    t.anon.refresh(&rt3).await.assert_problem(401);
    let access = r2.str("access_token");
    let revoked = eventually(Duration::from_secs(10), || async {
        t.as_bearer(&access).me().await.status.as_u16() == 401
    })
    .await;
    assert!(
        revoked.is_some(),
        "the revoked session's access token still works"
    );
    let events: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM security_events WHERE kind = 'refresh_token_reuse'",
            &[],
        )
        .await
        .expect("events")
        .get(0);
    assert_eq!(events, 1);
    app.finish().await;
}

#[tokio::test]
async fn reuse_of_the_predecessor_after_the_grace_window_revokes_the_family() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let r1 = t.anon.refresh(&u.refresh).await;
    r1.assert_status(200);
    // Age the rotation past the 10 s window (in the database, not by waiting).
    app.shared_owner()
        .await
        .execute("UPDATE refresh_tokens SET rotated_at = rotated_at - interval '11 seconds' WHERE rotated_at IS NOT NULL", &[])
        .await
        .expect("age");
    t.anon.refresh(&u.refresh).await.assert_problem(401);
    t.anon
        .refresh(&r1.str("refresh_token"))
        .await
        .assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_get_the_same_successor() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let results = futures_util::future::join_all((0..4).map(|_| t.anon.refresh(&u.refresh))).await;
    let ok: Vec<String> = results
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .map(|r| r.str("refresh_token"))
        .collect();
    assert!(!ok.is_empty());
    assert!(
        ok.iter().all(|r| *r == ok[0]),
        "different successors: {ok:?}"
    );
    for r in &results {
        assert!(matches!(r.status.as_u16(), 200 | 401), "{}", r.text);
    }
    // The successor works; the session is intact.
    t.anon.refresh(&ok[0]).await.assert_status(200);
    app.finish().await;
}
