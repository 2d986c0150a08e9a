//! One story through the `Store` trait that every backend must pass: tenants,
//! tables, versions, activation, calls, filters, tenancy and ingest jobs.

use callmeta_app::store::*;
use callmeta_core::csv::{Limits, TableOptions};
use callmeta_core::domain::{ColumnName, TableName, TenantSlug};
use callmeta_core::enrich::{EnrichmentResult, EnrichmentStatus, Metadata};
use callmeta_store::SqlStore;

fn options(key: &str) -> TableOptions {
    TableOptions {
        key: ColumnName::parse(key).unwrap(),
        max_row_drop_pct: None,
        on_header_change: Default::default(),
        as_of: Default::default(),
        valid_from: None,
        valid_to: None,
        keys: None,
        match_mode: Default::default(),
        region: None,
        duplicates: Default::default(),
        bad_rows: Default::default(),
    }
}

fn tenant(id: &str, slug: &str) -> Tenant {
    Tenant {
        id: TenantId(id.into()),
        slug: TenantSlug::parse(slug).unwrap(),
        password_hash: "h".into(),
        created_ms: 1,
    }
}

fn version(id: &str, table: &TableName, accepted: bool, created_ms: i64) -> VersionRecord {
    VersionRecord {
        id: id.into(),
        table: table.clone(),
        created_ms,
        channel: "http".into(),
        filename: Some("crm.csv".into()),
        sha256: format!("sha-{id}"),
        bytes: 10,
        blob_key: format!("b/{id}"),
        accepted,
        rows: 4,
        options: options("agent_id"),
        report: {
            let mut report =
                callmeta_core::csv::ingest(b"agent_id\nalice\n", &options("agent_id"), &Limits::default())
                    .expect("a one-row CSV ingests")
                    .report;
            report.accepted = accepted;
            report
        },
    }
}

fn call(id: &str, ts: i64, team: &str) -> CallRecord {
    let mut metadata = Metadata::new();
    metadata.insert("agent_id".into(), format!("agent-{id}"));
    let mut added = Metadata::new();
    added.insert("team_name".into(), team.into());
    CallRecord {
        unique_id: id.into(),
        timestamp_ms: ts,
        source: CallSource::Api,
        external_id: Some(format!("ext-{id}")),
        metadata,
        enrichment: vec![EnrichmentResult {
            table: "crm".into(),
            version: Some("v1".into()),
            status: EnrichmentStatus::Matched,
            key: "agent_id".into(),
            key_value: Some(format!("agent-{id}")),
            normalized_key: Some(format!("agent-{id}")),
            added: added.into(),
            collisions: vec![],
            at_ms: ts,
            matched_by: None,
            keys_tried: vec![],
            interval: None,
            as_of: None,
        }],
        audio_key: None,
        audio_pruned_ms: None,
        created_ms: ts,
        updated_ms: ts,
    }
}

pub async fn story(store: &dyn Store) {
    let a = tenant("ta", "alpha");
    let b = tenant("tb", "beta");
    store.create_tenant(&a, "hash-a").await.unwrap();
    store.create_tenant(&b, "hash-b").await.unwrap();
    assert!(matches!(
        store.create_tenant(&tenant("tc", "alpha"), "hash-c").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.tenant_by_token("hash-a").await.unwrap().id, a.id);
    assert_eq!(store.tenant_by_slug(&a.slug).await.unwrap().id, a.id);
    assert!(matches!(
        store.tenant_by_token("nope").await,
        Err(StoreError::NotFound)
    ));

    let crm = TableName::parse("crm").unwrap();
    let t = store
        .put_table(&a.id, &crm, &options("agent_id"), 10)
        .await
        .unwrap();
    assert_eq!(t.active_version, None);
    store
        .put_table(&a.id, &crm, &options("user_id"), 11)
        .await
        .unwrap();
    assert_eq!(
        store.table(&a.id, &crm).await.unwrap().options.key.as_str(),
        "user_id"
    );
    assert!(matches!(
        store.table(&b.id, &crm).await,
        Err(StoreError::NotFound)
    ));

    store
        .insert_version(&a.id, &version("v1", &crm, true, 20), true, &[])
        .await
        .unwrap();
    store
        .insert_version(&a.id, &version("v2", &crm, false, 30), false, &[])
        .await
        .unwrap();
    let t = store.table(&a.id, &crm).await.unwrap();
    assert_eq!(t.active_version.as_deref(), Some("v1"));
    assert_eq!(
        t.options.key.as_str(),
        "agent_id",
        "activation brings the version's options"
    );
    assert!(matches!(
        store.put_table(&a.id, &crm, &options("x"), 40).await,
        Err(StoreError::Conflict(_))
    ));
    let mut listed = store.tables_with_versions(&a.id, Some(&crm)).await.unwrap();
    assert_eq!(listed.len(), 1);
    let (table, versions) = listed.pop().unwrap();
    assert_eq!(table, t);
    assert_eq!(
        versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["v2", "v1"]
    );
    assert_eq!(versions[1], version("v1", &crm, true, 20));
    let all = store.tables_with_versions(&a.id, None).await.unwrap();
    assert_eq!(all, vec![(t.clone(), versions.clone())]);
    assert!(store.tables_with_versions(&b.id, None).await.unwrap().is_empty());
    let other = TableName::parse("other").unwrap();
    assert!(
        store
            .tables_with_versions(&a.id, Some(&other))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.version(&b.id, "v1").await,
        Err(StoreError::NotFound)
    ));
    let states = store.table_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].active_version.as_deref(), Some("v1"));
    // The activation in force at a time (`"as_of": "call_time"`), and
    // of two in one millisecond the later.
    assert_eq!(store.activation_at(&a.id, &crm, 19).await.unwrap(), None);
    let (at, kept) = store.activation_at(&a.id, &crm, 25).await.unwrap().unwrap();
    assert_eq!((at.version.as_str(), at.activated_ms, kept), ("v1", 20, true));
    store
        .activate_version(&a.id, &version("v2", &crm, true, 30), "http", 20, &[])
        .await
        .unwrap();
    let (at, _) = store.activation_at(&a.id, &crm, 20).await.unwrap().unwrap();
    assert_eq!(at.version, "v2");
    store
        .activate_version(&a.id, &version("v1", &crm, true, 20), "http", 20, &[])
        .await
        .unwrap();
    let (at, _) = store.activation_at(&a.id, &crm, 20).await.unwrap().unwrap();
    assert_eq!(at.version, "v1");
    assert_eq!(store.activation_at(&b.id, &crm, 25).await.unwrap(), None);

    store
        .insert_call(&a.id, &call("c1", 100, "diamond"), &[])
        .await
        .unwrap();
    store
        .insert_call(&a.id, &call("c2", 200, "ruby"), &[])
        .await
        .unwrap();
    store
        .insert_call(&a.id, &call("c3", 300, "diamond"), &[])
        .await
        .unwrap();
    assert!(matches!(
        store.insert_call(&a.id, &call("c4", 400, "x"), &[]).await,
        Ok(())
    ));
    let mut dup = call("c5", 500, "x");
    dup.external_id = Some("ext-c1".into());
    assert!(matches!(
        store.insert_call(&a.id, &dup, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.call(&a.id, "c2").await.unwrap(), call("c2", 200, "ruby"));
    assert!(matches!(store.call(&b.id, "c2").await, Err(StoreError::NotFound)));
    assert_eq!(
        store
            .call_by_external_id(&a.id, "ext-c3")
            .await
            .unwrap()
            .unique_id,
        "c3"
    );

    let q = |metadata: Vec<(&str, &str)>| CallQuery {
        limit: 10,
        filters: metadata
            .into_iter()
            .map(|(k, v)| KeyFilter::Equals {
                key: k.to_string(),
                values: vec![v.to_string()],
            })
            .collect(),
        ..Default::default()
    };
    let (n, calls) = store
        .list_calls(&a.id, &q(vec![]))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        calls.iter().map(|c| c.unique_id.as_str()).collect::<Vec<_>>(),
        ["c4", "c3", "c2", "c1"]
    );
    let (n, calls) = store
        .list_calls(&a.id, &q(vec![("team_name", "diamond")]))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!((n, calls.len()), (2, 2));
    let (n, _) = store
        .list_calls(&a.id, &q(vec![("agent_id", "agent-c2")]))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(n, 1);
    let (n, _) = store
        .list_calls(
            &a.id,
            &CallQuery {
                limit: 10,
                from_ms: Some(150),
                to_ms: Some(300),
                ..Default::default()
            },
        )
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(n, 2);
    let (n, page) = store
        .list_calls(
            &a.id,
            &CallQuery {
                limit: 1,
                offset: 1,
                ..Default::default()
            },
        )
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!((n, page[0].unique_id.as_str()), (4, "c3"));
    let (n, _) = store
        .list_calls(&b.id, &q(vec![]))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(n, 0);
    // After a call in list order: the next page of a walk, however the
    // calls already walked were changed.
    let after = |ts: i64, id: &str| CallQuery {
        limit: 10,
        after: Some((ts, id.to_string())),
        ..Default::default()
    };
    let c3 = store.call(&a.id, "c3").await.unwrap();
    let (_, rest) = store
        .list_calls(&a.id, &after(c3.timestamp_ms, "c3"))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(
        rest.iter().map(|c| c.unique_id.as_str()).collect::<Vec<_>>(),
        ["c2", "c1"]
    );
    let (_, rest) = store
        .list_calls(&a.id, &after(c3.timestamp_ms, "c4"))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(rest[0].unique_id, "c3", "same time, smaller id comes next");
    let (n, page) = store
        .list_calls(
            &a.id,
            &CallQuery {
                uncounted: true,
                ..after(c3.timestamp_ms, "c3")
            },
        )
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!((n, page.len()), (0, 2), "pages without their count");

    // Back-fills: recorded, their report replaced as they go, per tenant.
    let fill = BackfillRecord {
        id: "bf-1".into(),
        tenant: a.id.clone(),
        created_ms: 10,
        updated_ms: 10,
        finished_ms: None,
        dry_run: true,
        filter: serde_json::json!({"metadata": [["team_name", "diamond"]]}),
        report: serde_json::json!({"examined": 0}),
    };
    store.insert_backfill(&fill).await.unwrap();
    let done = BackfillRecord {
        updated_ms: 20,
        finished_ms: Some(20),
        report: serde_json::json!({"examined": 4}),
        ..fill.clone()
    };
    store.update_backfill(&done).await.unwrap();
    store
        .insert_backfill(&BackfillRecord {
            id: "bf-2".into(),
            created_ms: 30,
            ..fill.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.backfill(&a.id, "bf-1").await.unwrap(), done);
    assert!(matches!(
        store.backfill(&b.id, "bf-1").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .backfills(&a.id, 10)
            .await
            .unwrap()
            .iter()
            .map(|b| b.id.as_str())
            .collect::<Vec<_>>(),
        ["bf-2", "bf-1"]
    );
    assert_eq!(store.backfills(&a.id, 1).await.unwrap().len(), 1);
    assert!(store.backfills(&b.id, 10).await.unwrap().is_empty());
    assert!(matches!(
        store
            .update_backfill(&BackfillRecord {
                tenant: b.id.clone(),
                ..done.clone()
            })
            .await,
        Err(StoreError::NotFound)
    ));

    let mut updated = call("c1", 100, "onyx");
    updated.audio_key = Some("audio/c1.wav".into());
    updated.updated_ms = 999;
    store.update_call(&a.id, &updated, &[]).await.unwrap();
    assert_eq!(store.call(&a.id, "c1").await.unwrap(), updated);
    let (n, _) = store
        .list_calls(&a.id, &q(vec![("team_name", "onyx")]))
        .await
        .map(|p| (p.count, p.calls))
        .unwrap();
    assert_eq!(n, 1);
    assert!(matches!(
        store.update_call(&b.id, &updated, &[]).await,
        Err(StoreError::NotFound)
    ));

    // SSH keys, per tenant; adding one twice keeps one.
    store
        .add_tenant_key(&a.id, "ssh-ed25519 AAAA", "ops", 1)
        .await
        .unwrap();
    store
        .add_tenant_key(&a.id, "ssh-ed25519 AAAA", "ops", 2)
        .await
        .unwrap();
    assert_eq!(store.tenant_keys(&a.id).await.unwrap(), vec!["ssh-ed25519 AAAA"]);
    assert!(store.tenant_keys(&b.id).await.unwrap().is_empty());

    // SIPREC settings, and the SBC networks the operator registers: one
    // network may be several tenants' (a shared SBC).
    assert_eq!(store.siprec_settings(&a.id).await.unwrap(), None);
    store.put_siprec_settings(&a.id, "{}", 1).await.unwrap();
    store.put_siprec_settings(&a.id, r#"{"m":1}"#, 2).await.unwrap();
    assert_eq!(
        store.siprec_settings(&a.id).await.unwrap(),
        Some(r#"{"m":1}"#.to_string())
    );
    assert!(store.add_sip_source(&a.id, "192.0.2.0/24", 1).await.unwrap());
    assert!(!store.add_sip_source(&a.id, "192.0.2.0/24", 2).await.unwrap());
    assert!(store.add_sip_source(&a.id, "198.51.100.7/32", 3).await.unwrap());
    assert!(store.add_sip_source(&b.id, "198.51.100.7/32", 4).await.unwrap());
    let sources: Vec<(String, String)> = store
        .sip_sources()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tenant.0, s.network))
        .collect();
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert!(sources.contains(&(b.id.0.clone(), "198.51.100.7/32".to_string())));
    assert!(store.remove_sip_source(&a.id, "198.51.100.7/32").await.unwrap());
    assert!(!store.remove_sip_source(&a.id, "198.51.100.7/32").await.unwrap());
    assert_eq!(store.sip_sources().await.unwrap().len(), 2);
    assert_eq!(store.siprec_settings(&b.id).await.unwrap(), None);

    // Jobs: leased, renewed in bulk by their node, claimed once stale by
    // exactly one node and only of the kind asked for, taken back by their
    // node after a restart, gone with the version that records them.
    let job = |id: &str, kind: JobKind, lease_until_ms: i64| Job {
        id: id.into(),
        kind,
        tenant: a.id.clone(),
        created_ms: 100,
        payload: serde_json::json!({"table": "crm", "blob_key": format!("b/{id}")}),
        owner: "node-1".into(),
        lease_until_ms,
        attempts: 0,
    };
    let claim = |kind, owner: &'static str, now, until| store.claim_stale_job(kind, owner, now, until);
    store
        .insert_job(&job("j1", JobKind::Ingest, 1_000))
        .await
        .unwrap();
    store
        .insert_job(&job("j2", JobKind::Ingest, 5_000))
        .await
        .unwrap();
    store
        .insert_job(&job("r1", JobKind::Recording, 1_000))
        .await
        .unwrap();
    assert_eq!(
        claim(JobKind::Ingest, "node-2", 900, 2_000).await.unwrap(),
        None,
        "a live lease is not taken"
    );
    let ids = ["j1".to_string(), "r1".to_string(), "nope".to_string()];
    assert_eq!(store.renew_jobs("node-1", &ids, 1_500).await.unwrap(), 2);
    assert_eq!(
        store.renew_jobs("node-9", &ids, 1_500).await.unwrap(),
        0,
        "not node-9's"
    );
    assert_eq!(store.renew_jobs("node-1", &[], 1_500).await.unwrap(), 0);
    assert_eq!(
        claim(JobKind::Ingest, "node-2", 1_200, 2_000).await.unwrap(),
        None,
        "a renewed lease is not taken"
    );
    let claimed = claim(JobKind::Ingest, "node-2", 1_600, 3_000)
        .await
        .unwrap()
        .expect("the stale job is claimed");
    assert_eq!(
        claimed,
        Job {
            owner: "node-2".into(),
            lease_until_ms: 3_000,
            attempts: 1,
            ..job("j1", JobKind::Ingest, 0)
        }
    );
    assert_eq!(
        claim(JobKind::Ingest, "node-3", 1_600, 3_000).await.unwrap(),
        None,
        "claimed by one node only"
    );
    assert_eq!(
        store.renew_jobs("node-1", &ids, 9_000).await.unwrap(),
        1,
        "the stopped node's lease on j1 is gone"
    );
    store
        .update_job("j1", "node-2", &serde_json::json!({"step": 2}))
        .await
        .unwrap();
    assert!(
        matches!(
            store.update_job("j1", "node-1", &serde_json::json!({})).await,
            Err(StoreError::NotFound)
        ),
        "only the holder records progress"
    );
    // Taken back by its own node whatever the lease; by another only once
    // stale; not at all once gone.
    assert_eq!(
        store.take_job("r1", "node-3", 2_000, 20_000).await.unwrap(),
        None,
        "node-1 still holds it"
    );
    let taken = store
        .take_job("r1", "node-1", 2_000, 20_000)
        .await
        .unwrap()
        .expect("its own node takes it back");
    assert_eq!(
        (taken.kind, taken.lease_until_ms, taken.attempts),
        (JobKind::Recording, 20_000, 0)
    );
    assert_eq!(
        store
            .take_job("r1", "node-3", 20_001, 30_000)
            .await
            .unwrap()
            .map(|j| j.owner),
        Some("node-3".to_string()),
        "stale: anyone takes it"
    );
    store.delete_job("r1").await.unwrap();
    assert_eq!(
        store.take_job("r1", "node-3", 50_000, 60_000).await.unwrap(),
        None
    );
    let mut finished = version("j1", &crm, true, 100);
    finished.sha256 = "sha-j1".into();
    store.insert_version(&a.id, &finished, false, &[]).await.unwrap();
    assert_eq!(
        claim(JobKind::Ingest, "node-3", 10_000, 11_000)
            .await
            .unwrap()
            .map(|j| (j.id, j.payload)),
        Some(("j2".to_string(), job("j2", JobKind::Ingest, 0).payload)),
        "the recorded one is gone, the other remains"
    );
    assert_eq!(
        claim(JobKind::Backfill, "node-3", 99_000, 99_999).await.unwrap(),
        None,
        "no job of that kind"
    );
    store.delete_job("j2").await.unwrap();
    assert_eq!(
        claim(JobKind::Ingest, "node-3", 99_000, 99_999).await.unwrap(),
        None
    );

    // Web sessions: found by token hash until their absolute end or until
    // they rest longer than their idle lifetime, gone at logout.
    let web = WebSessionRecord {
        token_hash: "th-1".into(),
        tenant: a.id.clone(),
        tenant_slug: "acme".into(),
        csrf: "csrf-1".into(),
        created_ms: 1_000,
        expires_ms: 2_000,
        last_seen_ms: 1_000,
        idle_ms: 400,
        user_name: "alice".into(),
        role: Role::Analyst,
    };
    store.insert_web_session(&web).await.unwrap();
    assert_eq!(store.web_session("th-1", 1_300).await.unwrap(), Some(web.clone()));
    assert_eq!(
        store.web_session("th-1", 1_400).await.unwrap(),
        None,
        "idle too long"
    );
    store.touch_web_session("th-1", 1_300).await.unwrap();
    store.touch_web_session("th-1", 1_200).await.unwrap();
    let used = WebSessionRecord {
        last_seen_ms: 1_300,
        ..web.clone()
    };
    assert_eq!(
        store.web_session("th-1", 1_650).await.unwrap(),
        Some(used.clone()),
        "used at 1300 (a late, older touch does not move it back)"
    );
    store.touch_web_session("th-1", 1_900).await.unwrap();
    assert_eq!(
        store.web_session("th-1", 1_950).await.unwrap(),
        Some(WebSessionRecord {
            last_seen_ms: 1_900,
            ..web.clone()
        })
    );
    assert_eq!(
        store.web_session("th-1", 2_000).await.unwrap(),
        None,
        "at its absolute end"
    );
    assert_eq!(store.web_session("th-2", 1_500).await.unwrap(), None);
    // A new login purges the ended ones.
    let other = WebSessionRecord {
        token_hash: "th-3".into(),
        created_ms: 5_000,
        expires_ms: 9_000,
        last_seen_ms: 5_000,
        ..web.clone()
    };
    store.insert_web_session(&other).await.unwrap();
    store.touch_web_session("th-1", 1_950).await.unwrap();
    assert_eq!(store.web_session("th-1", 1_960).await.unwrap(), None, "purged");
    assert_eq!(store.web_session("th-3", 5_100).await.unwrap(), Some(other));
    store.insert_web_session(&web).await.unwrap();
    assert!(store.web_session("th-1", 1_300).await.unwrap().is_some());
    store.delete_web_session("th-1").await.unwrap();
    assert_eq!(
        store.web_session("th-1", 1_300).await.unwrap(),
        None,
        "logged out"
    );

    // Users: one name per tenant; disabling one ends its sessions in the
    // same transaction, and a new role reaches them.
    let alice = UserRecord {
        tenant: a.id.clone(),
        name: "alice".into(),
        role: Role::Analyst,
        password_hash: "hash".into(),
        disabled: false,
        created_ms: 1_000,
        updated_ms: 1_000,
    };
    store.insert_user(&alice).await.unwrap();
    assert!(matches!(
        store.insert_user(&alice).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .insert_user(&UserRecord {
            tenant: b.id.clone(),
            ..alice.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.users(&a.id).await.unwrap(), std::slice::from_ref(&alice));
    assert_eq!(store.user(&a.id, "alice").await.unwrap(), alice);
    assert!(matches!(
        store.user(&a.id, "bob").await,
        Err(StoreError::NotFound)
    ));
    store.insert_web_session(&web).await.unwrap();
    let admin = UserRecord {
        role: Role::Admin,
        updated_ms: 1_100,
        ..alice.clone()
    };
    store.update_user(&admin).await.unwrap();
    assert_eq!(
        store.web_session("th-1", 1_300).await.unwrap().map(|s| s.role),
        Some(Role::Admin)
    );
    store
        .update_user(&UserRecord {
            disabled: true,
            ..admin.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.web_session("th-1", 1_300).await.unwrap(), None, "ended");
    assert!(store.user(&a.id, "alice").await.unwrap().disabled);
    assert!(
        !store.user(&b.id, "alice").await.unwrap().disabled,
        "b's alice untouched"
    );
    assert!(matches!(
        store
            .update_user(&UserRecord {
                name: "bob".into(),
                ..alice.clone()
            })
            .await,
        Err(StoreError::NotFound)
    ));
    // SSH keys per login: the tenant's own ('') and a user's are apart.
    store
        .add_user_key(&a.id, "alice", "ssh-ed25519 AAAA1", "laptop", 1)
        .await
        .unwrap();
    store
        .add_user_key(&a.id, "alice", "ssh-ed25519 AAAA1", "again", 2)
        .await
        .unwrap();
    store
        .add_tenant_key(&a.id, "ssh-ed25519 AAAA2", "ops", 3)
        .await
        .unwrap();
    assert_eq!(
        store.user_keys(&a.id, "alice").await.unwrap(),
        ["ssh-ed25519 AAAA1"]
    );
    assert_eq!(
        store.tenant_keys(&a.id).await.unwrap(),
        ["ssh-ed25519 AAAA", "ssh-ed25519 AAAA2"]
    );
    assert!(matches!(
        store
            .add_user_key(&a.id, "bob", "ssh-ed25519 AAAA1", "stolen", 4)
            .await,
        Err(StoreError::Conflict(_))
    ));

    // The match rate of a version: every call of the story matched crm v1.
    let (results, matched) = store.version_match_counts(&a.id, &crm, "v1").await.unwrap();
    assert!(results >= 3 && matched == results, "{results} {matched}");
    assert_eq!(
        store.version_match_counts(&a.id, &crm, "v2").await.unwrap(),
        (0, 0)
    );
    assert_eq!(
        store.version_match_counts(&b.id, &crm, "v1").await.unwrap(),
        (0, 0)
    );
}

#[tokio::test]
async fn sqlite_passes_the_story() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("story.db")).await.unwrap();
    story(&store).await;
}

#[tokio::test]
async fn postgres_passes_the_story() {
    let Some(db) = crate::helpers::PgDatabase::create().await else {
        return; // no PostgreSQL: `postgres_url` said so (and fails in CI)
    };
    let store = callmeta_store::SqlStore::open_postgres(&db.url).await.unwrap();
    story(&store).await;
}
