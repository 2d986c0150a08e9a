//! What a tenant configures for its SIPREC calls, and how a call finds its
//! tenant. The SIP adapter flattens each call's metadata to stable keys; a
//! tenant maps any of those keys to the name its reference tables use (for
//! example a vendor's `participant_1_aor_user` to `agent_id`), so that its
//! reconciliation key is present on its calls.

use std::collections::BTreeMap;
use std::net::IpAddr;

use callmeta_core::enrich::Metadata;
use serde::{Deserialize, Serialize};

use super::{AppError, Services, now_ms, tenants};
use crate::store::{StoreError, TenantId};

/// Mappings at most per tenant.
pub const MAX_MAPPINGS: usize = 200;
/// Source addresses at most per tenant.
pub const MAX_SOURCES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiprecSettings {
    /// Flattened key → the name it is also given on the call.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// Addresses of the tenant's recording clients (SBCs): a SIPREC call
    /// from one of them whose Request-URI names no tenant is this tenant's.
    #[serde(default)]
    pub source_addresses: Vec<String>,
}

/// Stored as JSON; the source addresses live in their own table too (they
/// are looked up per call).
#[derive(Serialize, Deserialize)]
struct Stored {
    mapping: BTreeMap<String, String>,
}

fn valid_key(key: &str) -> bool {
    !key.trim().is_empty() && key.chars().count() <= super::calls::MAX_KEY_CHARS
}

pub async fn put_settings(
    services: &Services,
    tenant: &TenantId,
    mut settings: SiprecSettings,
) -> Result<SiprecSettings, AppError> {
    if settings.mapping.len() > MAX_MAPPINGS {
        return Err(AppError::invalid(
            "mapping",
            format!("at most {MAX_MAPPINGS} mappings"),
        ));
    }
    for (from, to) in &settings.mapping {
        if !valid_key(from) || !valid_key(to) {
            return Err(AppError::invalid(
                format!("mapping.{from}"),
                "keys and their new names must be 1 to 256 characters and not blank",
            ));
        }
    }
    if settings.source_addresses.len() > MAX_SOURCES {
        return Err(AppError::invalid(
            "source_addresses",
            format!("at most {MAX_SOURCES} addresses"),
        ));
    }
    let mut sources = Vec::new();
    for (i, address) in settings.source_addresses.iter().enumerate() {
        let ip: IpAddr = address.trim().parse().map_err(|_| {
            AppError::invalid(
                format!("source_addresses[{i}]"),
                format!("{address:?} is not an IP address"),
            )
        })?;
        let ip = ip.to_canonical().to_string();
        if !sources.contains(&ip) {
            sources.push(ip);
        }
    }
    settings.source_addresses = sources;
    let stored = serde_json::to_string(&Stored {
        mapping: settings.mapping.clone(),
    })
    .map_err(anyhow::Error::new)?;
    services
        .store
        .put_siprec_settings(tenant, &stored, &settings.source_addresses, now_ms())
        .await?;
    Ok(settings)
}

pub async fn settings(services: &Services, tenant: &TenantId) -> Result<SiprecSettings, AppError> {
    let Some((stored, source_addresses)) = services.store.siprec_settings(tenant).await? else {
        return Ok(SiprecSettings::default());
    };
    let stored: Stored = serde_json::from_str(&stored)
        .map_err(|e| AppError::from(StoreError::Corrupt(format!("SIPREC settings: {e}"))))?;
    Ok(SiprecSettings {
        mapping: stored.mapping,
        source_addresses,
    })
}

/// The tenant of a SIPREC call: the Request-URI's user part names it;
/// otherwise the tenant whose recording clients use the source address;
/// otherwise the default tenant; otherwise there is none (`NotFound`).
pub async fn tenant_for_call(
    services: &Services,
    request_user: Option<&str>,
    source: IpAddr,
    default_tenant: Option<&str>,
) -> Result<TenantId, AppError> {
    if let Some(user) = request_user.filter(|u| !u.is_empty())
        && let Ok(tenant) = tenants::tenant_by_slug(services, user).await
    {
        return Ok(tenant.id);
    }
    let source = source.to_canonical().to_string();
    if let Some(tenant) = services.store.tenant_by_sip_source(&source).await? {
        return Ok(tenant);
    }
    if let Some(slug) = default_tenant.filter(|s| !s.is_empty()) {
        return Ok(tenants::tenant_by_slug(services, slug).await?.id);
    }
    Err(AppError::NotFound(format!(
        "a tenant for this call (the Request-URI user {:?} is no tenant, and the source address {source} is \
         not configured for one)",
        request_user.unwrap_or("")
    )))
}

/// Adds the mapped names to flattened metadata. A mapped name that the call
/// already has keeps its own value.
pub fn apply_mapping(settings: &SiprecSettings, mut metadata: Metadata) -> Metadata {
    for (from, to) in &settings.mapping {
        if let Some(value) = metadata.get(from).cloned() {
            metadata.entry(to.clone()).or_insert(value);
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_adds_names_without_overwriting() {
        let settings = SiprecSettings {
            mapping: BTreeMap::from([
                ("participant_1_aor_user".to_string(), "agent_id".to_string()),
                ("x_agent".to_string(), "datetime".to_string()),
            ]),
            source_addresses: vec![],
        };
        let metadata = Metadata::from([
            ("participant_1_aor_user".to_string(), "cindy".to_string()),
            ("x_agent".to_string(), "zed".to_string()),
            ("datetime".to_string(), "2026-01-30T12:34:56Z".to_string()),
        ]);
        let mapped = apply_mapping(&settings, metadata);
        assert_eq!(mapped["agent_id"], "cindy");
        assert_eq!(mapped["datetime"], "2026-01-30T12:34:56Z");
    }
}
