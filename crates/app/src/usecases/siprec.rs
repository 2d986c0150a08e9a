//! What a tenant configures for its SIPREC calls, and which tenant a call is
//! for. The SIP adapter flattens each call's metadata to stable keys; a
//! tenant maps any of those keys to the name its reference tables use (for
//! example a vendor's `participant_1_aor_user` to `agent_id`), so that its
//! reconciliation key is present on its calls.
//!
//! Routing is the operator's, never the tenant's: the operator registers
//! each SBC's network for the tenants it records for ([`add_sip_source`]),
//! and [`Routes::route`] decides from the source address of an INVITE
//! (and, for a shared SBC, its Request-URI user).

use std::collections::BTreeMap;
use std::net::IpAddr;

use callmeta_core::enrich::Metadata;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{AppError, Services, tenants};
use crate::store::{StoreError, TenantId};

/// Mappings at most per tenant.
pub const MAX_MAPPINGS: usize = 200;
/// Registered SBC networks at most per tenant.
pub const MAX_SOURCES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiprecSettings {
    /// Flattened key → the name it is also given on the call.
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// The networks of the tenant's SBCs, as the operator registered them
    /// (read only here: `callmeta tenant sip-source`).
    #[serde(default)]
    pub source_addresses: Vec<String>,
}

/// Stored as JSON.
#[derive(Serialize, Deserialize)]
struct Stored {
    mapping: BTreeMap<String, String>,
}

fn valid_key(key: &str) -> bool {
    !key.trim().is_empty() && key.chars().count() <= super::calls::MAX_KEY_CHARS
}

/// Replaces the tenant's key mapping. The source addresses are the
/// operator's: sending back the registered ones (or none) is fine, asking
/// for others is refused rather than silently ignored.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn put_settings(
    services: &Services,
    tenant: &TenantId,
    settings: SiprecSettings,
    actor: &super::audit::Actor,
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
    let registered = sources_of(services, tenant).await?;
    if !settings.source_addresses.is_empty() {
        let mut asked = Vec::new();
        for (i, text) in settings.source_addresses.iter().enumerate() {
            let network =
                parse_network(text).map_err(|m| AppError::invalid(format!("source_addresses[{i}]"), m))?;
            asked.push(network.to_string());
        }
        asked.sort();
        asked.dedup();
        let mut have = registered.clone();
        have.sort();
        if asked != have {
            return Err(AppError::invalid(
                "source_addresses",
                "the SBC addresses that may send calls for a tenant are registered by the operator \
                 (`callmeta tenant sip-source add SLUG CIDR`); they cannot be changed through the API",
            ));
        }
    }
    let stored = serde_json::to_string(&Stored {
        mapping: settings.mapping.clone(),
    })
    .map_err(anyhow::Error::new)?;
    services
        .store
        .put_siprec_settings(tenant, &stored, services.now_ms())
        .await?;
    let detail = serde_json::json!({"mapping": &settings.mapping});
    super::audit::record(
        services,
        tenant,
        actor,
        super::audit::actions::SIPREC_SETTINGS,
        "siprec",
        detail,
    )
    .await;
    Ok(SiprecSettings {
        mapping: settings.mapping,
        source_addresses: registered,
    })
}

#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn settings(services: &Services, tenant: &TenantId) -> Result<SiprecSettings, AppError> {
    let source_addresses = sources_of(services, tenant).await?;
    let Some(stored) = services.store.siprec_settings(tenant).await? else {
        return Ok(SiprecSettings {
            source_addresses,
            ..SiprecSettings::default()
        });
    };
    let stored: Stored = serde_json::from_str(&stored)
        .map_err(|e| AppError::from(StoreError::Corrupt(format!("SIPREC settings: {e}"))))?;
    Ok(SiprecSettings {
        mapping: stored.mapping,
        source_addresses,
    })
}

async fn sources_of(services: &Services, tenant: &TenantId) -> Result<Vec<String>, AppError> {
    Ok(services
        .store
        .sip_sources()
        .await?
        .into_iter()
        .filter(|s| &s.tenant == tenant)
        .map(|s| s.network)
        .collect())
}

/// An address or a CIDR (`192.0.2.10`, `192.0.2.0/24`, `2001:db8::/32`), in
/// its canonical form (host bits cleared, IPv4-mapped IPv6 as IPv4).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let network = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("{text:?} is not an IP address or a CIDR network")),
        },
    };
    let network = match network {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|e| format!("{text:?}: {e}"))?
            }
            None => network,
        },
        _ => network,
    };
    Ok(network.trunc())
}

/// Registers a network as one of a tenant's SBCs (operator, CLI). Returns
/// the canonical network and whether it is new.
#[tracing::instrument(skip_all, fields(slug = slug, network = network))]
pub async fn add_sip_source(
    services: &Services,
    slug: &str,
    network: &str,
) -> Result<(String, bool), AppError> {
    let tenant = tenants::tenant_by_slug(services, slug).await?;
    let network = parse_network(network)
        .map_err(|m| AppError::invalid("network", m))?
        .to_string();
    if sources_of(services, &tenant.id).await?.len() >= MAX_SOURCES {
        return Err(AppError::invalid(
            "network",
            format!("a tenant has at most {MAX_SOURCES} SBC networks"),
        ));
    }
    let added = services
        .store
        .add_sip_source(&tenant.id, &network, services.now_ms())
        .await?;
    Ok((network, added))
}

/// Removes a registration; `NotFound` if the tenant had no such network.
#[tracing::instrument(skip_all, fields(slug = slug, network = network))]
pub async fn remove_sip_source(services: &Services, slug: &str, network: &str) -> Result<String, AppError> {
    let tenant = tenants::tenant_by_slug(services, slug).await?;
    let network = parse_network(network)
        .map_err(|m| AppError::invalid("network", m))?
        .to_string();
    if services.store.remove_sip_source(&tenant.id, &network).await? {
        Ok(network)
    } else {
        Err(AppError::NotFound(format!(
            "SBC network {network} of tenant {slug}"
        )))
    }
}

/// The networks registered for one tenant.
#[tracing::instrument(skip_all, fields(slug = slug))]
pub async fn list_sip_sources(services: &Services, slug: &str) -> Result<Vec<String>, AppError> {
    let tenant = tenants::tenant_by_slug(services, slug).await?;
    sources_of(services, &tenant.id).await
}

/// The operator's routing table, loaded once and consulted per INVITE.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    sources: Vec<(IpNet, TenantId, String)>,
    /// `--sip-default-tenant`: receives the calls of unregistered sources.
    default_tenant: Option<(TenantId, String)>,
}

/// Why a call may not be recorded for any tenant (SIP `403`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl Routes {
    /// Reads the registrations and resolves the default tenant's slug.
    #[tracing::instrument(skip_all)]
    pub async fn load(services: &Services, default_tenant: Option<&str>) -> Result<Routes, AppError> {
        let mut sources = Vec::new();
        for source in services.store.sip_sources().await? {
            match parse_network(&source.network) {
                Ok(net) => sources.push((net, source.tenant, source.slug)),
                Err(e) => {
                    tracing::warn!(network = %source.network, error = %e, "ignoring a stored SBC network")
                }
            }
        }
        let default_tenant = match default_tenant.filter(|s| !s.is_empty()) {
            Some(slug) => {
                let tenant = tenants::tenant_by_slug(services, slug).await?;
                Some((tenant.id, tenant.slug.to_string()))
            }
            None => None,
        };
        Ok(Routes {
            sources,
            default_tenant,
        })
    }

    /// The tenant of a call from `source` whose Request-URI user is
    /// `request_user`:
    /// - a source registered for one tenant: that tenant, unless the user
    ///   names another tenant (refused);
    /// - registered for several (a shared SBC): the one the user names, if
    ///   it is among them; otherwise refused;
    /// - registered for none: the default tenant if there is one (unless the
    ///   user names another tenant), otherwise refused.
    ///
    /// Whether a user that is none of the slugs here names some other
    /// tenant is the store's to say: see [`route_call`].
    pub fn route(&self, request_user: Option<&str>, source: IpAddr) -> Result<Route, Refused> {
        let source = source.to_canonical();
        let user = request_user.map(str::trim).filter(|u| !u.is_empty());
        let mut registered: Vec<&(IpNet, TenantId, String)> = self
            .sources
            .iter()
            .filter(|(net, _, _)| net.contains(&source))
            .collect();
        registered.dedup_by(|a, b| a.1 == b.1);
        let named = |slug: &str| user.is_some_and(|u| u.eq_ignore_ascii_case(slug));
        let names_a_known_tenant = self.sources.iter().any(|(_, _, slug)| named(slug))
            || self.default_tenant.as_ref().is_some_and(|(_, slug)| named(slug));
        let not_for_that_tenant = || {
            Refused(format!(
                "the source address {source} is not registered for the tenant the Request-URI names"
            ))
        };
        let only = |tenant: &TenantId, slug: &str| {
            if named(slug) || user.is_none() {
                Ok(Route::Tenant(tenant.clone()))
            } else if names_a_known_tenant {
                Err(not_for_that_tenant())
            } else {
                Ok(Route::UnlessUserNamesAnother(tenant.clone()))
            }
        };
        match registered.as_slice() {
            [] => match &self.default_tenant {
                Some((tenant, slug)) => only(tenant, slug),
                None => Err(Refused(format!(
                    "the source address {source} is not registered for any tenant"
                ))),
            },
            [(_, tenant, slug)] => only(tenant, slug),
            several => match several.iter().find(|(_, _, slug)| named(slug)) {
                Some((_, tenant, _)) => Ok(Route::Tenant(tenant.clone())),
                None => Err(Refused(format!(
                    "the source address {source} is shared by several tenants: the Request-URI user must name one of them"
                ))),
            },
        }
    }
}

/// Where [`Routes::route`] sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Tenant(TenantId),
    /// This tenant, unless the Request-URI user is another tenant's slug.
    UnlessUserNamesAnother(TenantId),
}

/// The tenant of a SIPREC call, or why there is none.
#[tracing::instrument(skip_all, fields(%source, user = request_user))]
pub async fn route_call(
    services: &Services,
    routes: &Routes,
    request_user: Option<&str>,
    source: IpAddr,
) -> Result<TenantId, Refused> {
    match routes.route(request_user, source)? {
        Route::Tenant(tenant) => Ok(tenant),
        Route::UnlessUserNamesAnother(tenant) => {
            let user = request_user.map(str::trim).unwrap_or("");
            match tenants::tenant_by_slug(services, user).await {
                Ok(other) if other.id != tenant => Err(Refused(format!(
                    "the source address {} is not registered for the tenant the Request-URI names",
                    source.to_canonical()
                ))),
                _ => Ok(tenant),
            }
        }
    }
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

#[cfg(test)]
mod routing {
    use super::*;

    fn routes(sources: &[(&str, &str)], default: Option<&str>) -> Routes {
        Routes {
            sources: sources
                .iter()
                .map(|(net, slug)| {
                    (
                        parse_network(net).unwrap(),
                        TenantId(format!("id-{slug}")),
                        slug.to_string(),
                    )
                })
                .collect(),
            default_tenant: default.map(|slug| (TenantId(format!("id-{slug}")), slug.to_string())),
        }
    }

    fn check(routes: &Routes, user: Option<&str>, source: &str) -> String {
        match routes.route(user, source.parse().unwrap()) {
            Ok(Route::Tenant(t)) => t.0,
            Ok(Route::UnlessUserNamesAnother(t)) => format!("{} unless another tenant", t.0),
            Err(Refused(why)) => format!("403 {why}"),
        }
    }

    #[test]
    fn the_operator_routes_calls() {
        let r = routes(
            &[
                ("192.0.2.0/24", "acme"),
                ("198.51.100.7", "acme"),
                ("198.51.100.7", "globex"),
                ("2001:db8::/32", "initech"),
            ],
            None,
        );
        assert_eq!(check(&r, None, "192.0.2.9"), "id-acme");
        assert_eq!(
            check(&r, Some("srs"), "192.0.2.9"),
            "id-acme unless another tenant"
        );
        assert_eq!(check(&r, Some("acme"), "::ffff:192.0.2.9"), "id-acme");
        // A Request-URI cannot move a registered SBC's calls to another tenant.
        assert!(check(&r, Some("globex"), "192.0.2.9").starts_with("403"));
        // A shared SBC: the Request-URI user selects among its tenants.
        assert_eq!(check(&r, Some("GLOBEX"), "198.51.100.7"), "id-globex");
        assert_eq!(check(&r, Some("acme"), "198.51.100.7"), "id-acme");
        assert!(check(&r, None, "198.51.100.7").starts_with("403"));
        assert!(check(&r, Some("initech"), "198.51.100.7").starts_with("403"));
        assert_eq!(check(&r, None, "2001:db8::5"), "id-initech");
        // Nobody registered it, and no default tenant.
        assert!(check(&r, Some("acme"), "203.0.113.1").starts_with("403"));
    }

    #[test]
    fn a_default_tenant_takes_unregistered_sources_only() {
        let r = routes(&[("192.0.2.0/24", "acme")], Some("solo"));
        assert_eq!(check(&r, None, "203.0.113.1"), "id-solo");
        assert_eq!(check(&r, Some("solo"), "203.0.113.1"), "id-solo");
        assert_eq!(
            check(&r, Some("12345"), "203.0.113.1"),
            "id-solo unless another tenant"
        );
        assert!(check(&r, Some("acme"), "203.0.113.1").starts_with("403"));
        assert_eq!(check(&r, None, "192.0.2.1"), "id-acme");
    }

    #[test]
    fn networks_are_canonical() {
        assert_eq!(
            parse_network("192.0.2.77/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(parse_network(" 10.1.2.3 ").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(
            parse_network("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_network("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("sbc.example.com").is_err());
    }
}
