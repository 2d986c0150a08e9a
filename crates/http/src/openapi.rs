//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the views' `ToSchema` derives.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "callmeta", description = "Calls enriched with the matching row of the customer's CRM export."),
    paths(
        super::tables::list_tables,
        super::tables::get_table,
        super::tables::put_table,
        super::tables::put_table_data,
        super::tables::activate_version,
        super::calls::create_call,
        super::calls::list_calls,
        super::calls::call_facets,
        super::calls::export_calls,
        super::calls::get_call,
        super::calls::get_call_audio,
        super::calls::backfill,
        super::calls::list_backfills,
        super::calls::get_backfill,
        super::siprec::get_settings,
        super::siprec::put_settings,
        super::tokens::create_token,
        super::tokens::list_tokens,
        super::tokens::delete_token,
        super::webhooks::create_webhook,
        super::webhooks::list_webhooks,
        super::webhooks::delete_webhook,
        super::webhooks::list_deliveries,
        super::audit::list_audit,
        super::calls::delete_call,
        super::tables::delete_table,
        super::retention::get_retention,
        super::retention::put_retention,
        super::users::create_user,
        super::users::list_users,
        super::users::change_user,
        super::exports::get_daily,
        super::exports::put_daily,
        super::exports::delete_daily,
        super::exports::list_runs,
        super::exports::run_now,
    ),
    modifiers(&TokenAuth, &Forbidden),
    tags((name = "tables", description = "Reference tables and their versions"),
         (name = "calls", description = "Calls and their enrichment"),
         (name = "siprec", description = "SIPREC key mapping and recording clients"),
         (name = "tokens", description = "API tokens and their roles"),
         (name = "users", description = "The tenant's users: their logins (web app, FTP, SFTP) and roles"),
         (name = "webhooks", description = "Signed event deliveries to the tenant's endpoints"),
         (name = "audit", description = "Who did what, from where, on which object"),
         (name = "retention", description = "How long calls, audio, rejected uploads and versions are kept"),
         (name = "exports", description = "The daily export push to the tenant's SFTP server or S3 bucket"))
)]
pub(crate) struct ApiDoc;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <api_token>` (or `Bearer <api_token>`)",
            ))),
        );
    }
}

/// Every operation that takes a token may answer 403: the token is valid but
/// its role does not allow the operation (`tokens::Role::allows`). Added
/// here once rather than on each handler.
struct Forbidden;

impl Modify for Forbidden {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let forbidden = ResponseBuilder::new()
            .description("The token's role does not allow this operation")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    op.responses
                        .responses
                        .entry("403".to_string())
                        .or_insert_with(|| forbidden.clone().into());
                }
            }
        }
    }
}

pub(crate) async fn openapi_json() -> Result<Json<serde_json::Value>, crate::error::ApiError> {
    let document = serde_json::to_value(ApiDoc::openapi()).map_err(|e| {
        tracing::error!(error = %e, "writing the OpenAPI document");
        crate::error::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an unexpected error happened; it has been logged",
        )
    })?;
    Ok(Json(with_link_keys_fixed(document)))
}

/// utoipa 5 writes a response link's `operationId` as `operation_id` (and
/// `operationRef`, `requestBody` likewise), which no OpenAPI tool reads; the
/// links let clients and schemathesis follow a created call or table to the
/// operations that take its id, so the keys are renamed in the served JSON.
fn with_link_keys_fixed(mut document: serde_json::Value) -> serde_json::Value {
    let operations = document
        .get_mut("paths")
        .and_then(|p| p.as_object_mut())
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let links = operation
            .get_mut("responses")
            .and_then(|r| r.as_object_mut())
            .into_iter()
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links").and_then(|l| l.as_object_mut()))
            .flat_map(|links| links.values_mut())
            .filter_map(|link| link.as_object_mut());
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_string(), value);
                }
            }
        }
    }
    document
}

// Schemas written out where a derive cannot say what the server checks: the
// values an enum accepts, a name's rules, a map's keys and lengths (in
// characters, on both sides). Whitespace is spelled out as the server's
// `trim` knows it (Unicode White_Space), because regex engines disagree on
// `\s`.

use callmeta_core::csv::{BadRowPolicy, DuplicatePolicy};
use callmeta_core::enrich::EnrichmentStatus;
use callmeta_core::matching::MatchMode;
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, Object, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};

fn string_enum(values: impl IntoIterator<Item = &'static str>, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .build()
}

pub(crate) fn match_mode() -> Object {
    use MatchMode::*;
    // Exhaustive, so a new mode cannot be left out of the document.
    let _ = |m: MatchMode| match m {
        Exact | CaseInsensitive | Phone | Prefix | PhonePrefix => (),
    };
    string_enum(
        [Exact, CaseInsensitive, Phone, Prefix, PhonePrefix].map(MatchMode::as_str),
        "How key values are compared: `exact` (default), `case_insensitive` (Unicode case folding), `phone` (as E.164 numbers), \
         `prefix` (the longest key cell the value starts with) or `phone_prefix` (the same, the value in E.164 and the key cells as E.164 prefixes).",
    )
}

pub(crate) fn header_change() -> Object {
    use callmeta_core::csv::HeaderChange::*;
    let _ = |h: callmeta_core::csv::HeaderChange| match h {
        Accept | Reject => (),
    };
    string_enum(
        [Accept, Reject].map(callmeta_core::csv::HeaderChange::as_str),
        "Activation guard: `reject` records, without activating, an upload that lacks a column of the active version; `accept` (default) activates it.",
    )
}

pub(crate) fn as_of() -> Object {
    use callmeta_core::csv::AsOf::*;
    let _ = |a: callmeta_core::csv::AsOf| match a {
        Processing | CallTime => (),
    };
    string_enum(
        [Processing, CallTime].map(callmeta_core::csv::AsOf::as_str),
        "Which version enriches a call: `processing` (default), the one active when the call is processed (created, updated, back-filled); `call_time`, the one that was active at the call's timestamp (a call before the table's first activation gets `no_version`).",
    )
}

pub(crate) fn duplicates() -> Object {
    use DuplicatePolicy::*;
    let _ = |d: DuplicatePolicy| match d {
        First | Last | Reject | Ambiguous => (),
    };
    string_enum(
        [First, Last, Reject, Ambiguous].map(DuplicatePolicy::as_str),
        "Rows whose key repeats an earlier row's: keep the `first` (default) or the `last`, `reject` the upload, or accept it and answer `ambiguous` for such keys.",
    )
}

pub(crate) fn bad_rows() -> Object {
    use BadRowPolicy::*;
    let all = [Reject, Skip];
    let _ = |b: BadRowPolicy| match b {
        Reject | Skip => (),
    };
    string_enum(
        all.map(|b| match b {
            Reject => "reject",
            Skip => "skip",
        }),
        "A row with a problem: `reject` the upload (default) or `skip` the row and report it.",
    )
}

pub(crate) fn enrichment_status() -> Object {
    use EnrichmentStatus::*;
    let _ = |s: EnrichmentStatus| match s {
        Matched | NoMatch | KeyMissing | Ambiguous | NoVersion => (),
    };
    string_enum(
        [Matched, NoMatch, KeyMissing, Ambiguous, NoVersion].map(EnrichmentStatus::as_str),
        "What the table gave the call.",
    )
}

pub(crate) fn as_of_reason() -> Object {
    use callmeta_core::enrich::AsOfReason::*;
    let _ = |r: callmeta_core::enrich::AsOfReason| match r {
        ActiveAtCallTime | BeforeFirstActivation | VersionRemoved | VersionUnavailable => (),
    };
    string_enum(
        [
            ActiveAtCallTime,
            BeforeFirstActivation,
            VersionRemoved,
            VersionUnavailable,
        ]
        .map(callmeta_core::enrich::AsOfReason::as_str),
        "Why a `call_time` table used the version it did: `active_at_call_time` (the version was the active one at the call's timestamp); with status `no_version`, `before_first_activation` (the call is older than the table's first version), `version_removed` (the version active then was deleted since, by retention or erasure; `version` names it) or `version_unavailable` (it could not be loaded).",
    )
}

pub(crate) fn call_source() -> Object {
    string_enum(["siprec", "api", "ftp"], "How the call arrived.")
}

pub(crate) fn audio_state() -> Object {
    string_enum(
        ["available", "missing", "pruned"],
        "Whether the call has a recording: `available`, `missing` (none was received) or `pruned` (removed by the tenant's retention policy; the audio URL answers 451).",
    )
}

pub(crate) fn version_state() -> Object {
    string_enum(["active", "inactive", "rejected"], "The version's state.")
}

pub(crate) fn backfill_state() -> Object {
    string_enum(
        ["running", "finished"],
        "`running` (another node goes on with it if its node stops) or `finished`.",
    )
}

/// The default region of `phone` matching: an ISO 3166 alpha-2 code that
/// the phone-number library knows (lower case and blanks are accepted too).
pub(crate) fn region() -> Object {
    let mut values: Vec<serde_json::Value> = callmeta_core::matching::known_regions()
        .into_iter()
        .map(serde_json::Value::String)
        .collect();
    // Blank means no region, as does null.
    values.push(serde_json::Value::String(String::new()));
    values.push(serde_json::Value::Null);
    ObjectBuilder::new()
        .schema_type([Type::String, Type::Null].into_iter().collect::<utoipa::openapi::schema::SchemaType>())
        .enum_values(Some(values))
        .description(Some(
            "Default region for `phone` matching: national numbers are read in it (ISO 3166 alpha-2, e.g. `FR`).",
        ))
        .build()
}

/// An RFC 3339 date-time, e.g. `2026-01-30T12:34:56Z`.
pub(crate) fn date_time() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

/// An optional RFC 3339 date-time.
pub(crate) fn optional_date_time() -> Object {
    ObjectBuilder::new()
        .schema_type(
            [Type::String, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

/// A call's `external_id`: absent or null, or 1 to 256 characters, not
/// blank.
pub(crate) fn optional_external_id() -> Object {
    use callmeta_app::usecases::calls::MAX_EXTERNAL_ID_CHARS;
    ObjectBuilder::new()
        .schema_type(
            [Type::String, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .min_length(Some(1))
        .max_length(Some(MAX_EXTERNAL_ID_CHARS))
        .pattern(Some(format!("[^{WHITESPACE}]")))
        .description(Some(
            "Your id for the call (1 to 256 characters, not blank); a repeated `external_id` returns the existing call.",
        ))
        .build()
}

/// A number of a retention policy: absent or null (keep forever), or a
/// whole number from 1 to `max`.
fn retention_number(max: u32, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(
            [Type::Integer, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .minimum(Some(1))
        .maximum(Some(max))
        .description(Some(description))
        .build()
}

pub(crate) fn retention_days() -> Object {
    use callmeta_app::usecases::retention::MAX_DAYS;
    retention_number(
        MAX_DAYS,
        "Days kept, from 1 to 36500; absent or null: kept forever.",
    )
}

pub(crate) fn retention_versions() -> Object {
    use callmeta_app::usecases::retention::MAX_VERSIONS_KEPT;
    retention_number(
        MAX_VERSIONS_KEPT,
        "Versions kept per table, newest first, from 1 to 100000 (the active version is always kept); absent or null: all.",
    )
}

/// Unicode White_Space, what `str::trim` removes, as a character-class body.
const WHITESPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters (Unicode Cc), what `char::is_control` finds.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";

/// A key that is not blank, at most `max_chars` characters.
fn non_blank(max_chars: usize) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(format!("[^{WHITESPACE}]")))
        .build()
}

/// A CSV column name: once trimmed, not empty, no control characters, at
/// most 256 characters (the document counts them before trimming).
pub(crate) fn column_name() -> Object {
    // Neither a control character nor whitespace (the whitespace that is
    // not a control character, that is).
    let inner = format!(r"[^{CONTROL} \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(256))
        .pattern(Some(format!("^[{WHITESPACE}]*{inner}([^{CONTROL}]*{inner})?[{WHITESPACE}]*$")))
        .description(Some(
            "The key column: a header of the CSV and the call metadata key of the same name. Not blank, without control characters.",
        ))
        .examples(["agent_id"])
        .build()
}

/// Compound or fallback keys: a list of keys, each a list of column names.
pub(crate) fn key_entries() -> ArrayBuilder {
    use callmeta_core::csv::MAX_KEYS;
    let entry: RefOr<Schema> = RefOr::T(Schema::Array(
        ArrayBuilder::new()
            .items(RefOr::T(Schema::Object(column_name())))
            .min_items(Some(1))
            .max_items(Some(MAX_KEYS))
            .description(Some("One key: one column, or several that must all match"))
            .build(),
    ));
    ArrayBuilder::new()
        .items(entry)
        .min_items(Some(1))
        .max_items(Some(MAX_KEYS))
        .description(Some(
            "Compound or fallback keys, tried in order; the first that matches wins \
             (e.g. `[[\"site\", \"extension\"], [\"agent_email\"]]`). A column may not repeat within a key, \
             nor a key within the list.",
        ))
}

/// A call's own metadata as sent: text, number or boolean values.
pub(crate) fn call_metadata_in() -> Object {
    use callmeta_app::usecases::calls::{MAX_KEY_CHARS, MAX_METADATA_KEYS, MAX_VALUE_CHARS};
    let value: Schema = AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_VALUE_CHARS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .build()
        .into();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(Schema::Object(non_blank(MAX_KEY_CHARS))))
        .additional_properties(Some(value))
        .max_properties(Some(MAX_METADATA_KEYS))
        .description(Some(
            "The call's own metadata: keys (not blank) to strings; numbers and booleans are accepted and kept as their JSON text.",
        ))
        .examples([serde_json::json!({"datetime": "2026-01-30T12:34:56Z", "phonenumber": "+33102030405", "agent_id": "cindy"})])
        .build()
}

/// Metadata filters: a key (own or added) to the value it must have.
pub(crate) fn metadata_filter() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .build(),
        )))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("Only calls whose metadata (own or added) has these values."))
        .build()
}

/// SIPREC key mapping: flattened key to the name it is also given.
pub(crate) fn siprec_mapping() -> Object {
    use callmeta_app::usecases::calls::MAX_KEY_CHARS;
    use callmeta_app::usecases::siprec::MAX_MAPPINGS;
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(Schema::Object(non_blank(MAX_KEY_CHARS))))
        .additional_properties(Some(Schema::Object(non_blank(MAX_KEY_CHARS))))
        .max_properties(Some(MAX_MAPPINGS))
        .description(Some(
            "Flattened key → the name it is also given on the call, e.g. `{\"participant_1_aor_user\": \"agent_id\"}`. Keys and names are not blank.",
        ))
        .build()
}

/// The networks of a tenant's recording clients (SBCs), as the operator
/// registered them.
pub(crate) fn source_addresses() -> ArrayBuilder {
    use callmeta_app::usecases::siprec::MAX_SOURCES;
    let network: RefOr<Schema> = RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(64))
            .description(Some("An address or a CIDR network, e.g. `192.0.2.0/24`"))
            .build(),
    ));
    ArrayBuilder::new()
        .items(network)
        .max_items(Some(MAX_SOURCES))
        .description(Some(
            "Networks of the tenant's SBCs, registered by the operator (`callmeta tenant sip-source add`): \
             read only. A PUT may leave it out or send it back unchanged; any other value is refused (422).",
        ))
}

/// An API token's role.
pub(crate) fn token_role() -> Object {
    use callmeta_app::store::Role;
    string_enum(
        Role::ALL.map(Role::as_str),
        "`admin` (everything, tokens and users included), `analyst` (reads calls, tables and \
         settings, previews back-fills) or `uploader` (sends calls and table versions, reads tables).",
    )
}

/// A user's name: what it types before `@TENANT` to log in.
pub(crate) fn user_name() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[a-z0-9][a-z0-9._-]*$"))
        .examples(["alice"])
        .build()
}

/// A user's password: write-only.
pub(crate) fn user_password() -> Object {
    use callmeta_app::usecases::users::MAX_PASSWORD_CHARS;
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(8))
        .max_length(Some(MAX_PASSWORD_CHARS))
        .write_only(Some(true))
        .build()
}

/// An API token's name: 1 to 100 characters once trimmed, no control characters.
pub(crate) fn token_name() -> Object {
    let inner = format!(r"[^{CONTROL} \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some(format!(
            "^[{WHITESPACE}]*{inner}([^{CONTROL}]*{inner})?[{WHITESPACE}]*$"
        )))
        .examples(["nightly export"])
        .build()
}

/// Days until a token expires, or null.
pub(crate) fn expires_in_days() -> Object {
    use callmeta_app::usecases::tokens::MAX_EXPIRES_IN_DAYS;
    ObjectBuilder::new()
        .schema_type(
            [Type::Integer, Type::Null]
                .into_iter()
                .collect::<utoipa::openapi::schema::SchemaType>(),
        )
        .minimum(Some(1))
        .maximum(Some(MAX_EXPIRES_IN_DAYS))
        .description(Some(
            "Days until the token expires (1 to 3650); absent or null: it does not expire.",
        ))
        .build()
}

/// The channel of an audit entry.
pub(crate) fn audit_channel() -> Object {
    use callmeta_app::usecases::audit::Channel;
    string_enum(
        Channel::ALL.map(Channel::as_str),
        "How the request arrived: `api`, `web`, `ftp`, `sftp`, `siprec`, `cli` or `system` (callmeta itself).",
    )
}

/// The action of an audit entry.
pub(crate) fn audit_action() -> Object {
    use callmeta_app::usecases::audit::actions;
    string_enum(
        actions::ALL,
        "What was done. `login.failed` with `detail.suppressed` counts the failed logins of a minute past the \
         ones listed one by one.",
    )
}

/// A webhook endpoint's URL.
pub(crate) fn webhook_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("uri".into())))
        .max_length(Some(callmeta_app::usecases::webhooks::MAX_URL_CHARS))
        .pattern(Some("^[Hh][Tt][Tt][Pp][Ss]?://"))
        .description(Some(
            "An http or https URL without credentials. Loopback, private and link-local destinations              (and names that resolve to them) are refused unless the operator allows them.",
        ))
        .build()
}

/// The events an endpoint receives: at least one.
pub(crate) fn webhook_events() -> ArrayBuilder {
    use callmeta_app::usecases::webhooks::Event;
    let event: RefOr<Schema> = RefOr::T(Schema::Object(string_enum(
        Event::SUBSCRIBABLE.map(Event::as_str),
        "An event: a call created, updated (SIPREC update, back-fill), its audio stored; a table version activated or rejected.",
    )));
    ArrayBuilder::new().items(event).min_items(Some(1))
}

/// A webhook's signing secret: 1 to 256 characters.
pub(crate) fn webhook_secret() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(callmeta_app::usecases::webhooks::MAX_SECRET_CHARS))
        .write_only(Some(true))
        .description(Some("The HMAC-SHA256 key of `X-Callmeta-Signature`; write-only."))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_their_operation_as_openapi_spells_it() {
        let doc = with_link_keys_fixed(serde_json::to_value(ApiDoc::openapi()).unwrap());
        let link = &doc["paths"]["/api/v1/calls"]["post"]["responses"]["201"]["links"]["GetCallAudio"];
        assert_eq!(link["operationId"], "get_call_audio", "{link}");
        assert!(link.get("operation_id").is_none(), "{link}");
        let op = &doc["paths"]["/api/v1/calls/{unique_id}/audio"]["get"]["operationId"];
        assert_eq!(op, "get_call_audio");
    }

    #[test]
    fn every_operation_that_takes_a_token_may_answer_403() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut secured = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op.get("security").is_some() {
                    secured += 1;
                    assert!(
                        op["responses"].get("403").is_some(),
                        "{method} {path} does not declare 403"
                    );
                }
            }
        }
        assert!(secured >= 17, "{secured} operations take a token");
        let create = &doc["paths"]["/api/v1/tokens"]["post"]["responses"];
        assert!(
            create.get("201").is_some() && create.get("422").is_some(),
            "{create}"
        );
    }
}
