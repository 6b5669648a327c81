//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations and the API
//! types' `ToSchema` derives, then completed from the code that enforces it: each operation's
//! security comes from [`crate::auth::required_scope`] (the scope the middleware checks), and
//! the answers the middleware can give (401, 403, 429, 413) are added to every operation it
//! guards. `docs/openapi.json` is this document, committed; a test keeps it current.

use std::{collections::BTreeSet, sync::OnceLock};

use axum::{http::header, response::IntoResponse};
use utoipa::{
    openapi::{
        path::Operation,
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
        Content, Header, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder,
    },
    OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{required_scope, Scope};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Custody coordinator API",
        description = "Threshold-MPC custody signer. See docs/api.md. Generated from the \
                       coordinator's code: do not edit docs/openapi.json by hand.",
    ),
    tags(
        (name = "keys", description = "Keys: generation, state, freezes and locks."),
        (name = "sign-requests", description = "Sign requests, approvals and vetoes."),
        (name = "accounts", description = "Segregated accounts of a key."),
        (name = "reserves", description = "Proof-of-reserves reports."),
        (name = "presignatures", description = "A key's presignature pool."),
        (name = "nodes", description = "The signer nodes."),
        (name = "policy", description = "Signed policy bundles."),
        (name = "metrics", description = "Prometheus metrics."),
        (name = "health", description = "Liveness and readiness, without credentials."),
        (name = "meta", description = "This document."),
    )
)]
struct Info;

/// This document (no credential needed)
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.", body = Object)),
)]
pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// The document as served: pretty JSON with a final newline.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}

/// The OpenAPI document of every route of the router.
pub fn document() -> Document {
    let public: BTreeSet<String> = super::public_routes()
        .into_openapi()
        .paths
        .paths
        .into_keys()
        .collect();
    let mut doc = OpenApiRouter::with_openapi(Info::openapi())
        .merge(super::public_routes())
        .merge(super::authed_routes())
        .into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        "clientCert",
        SecurityScheme::MutualTls {
            description: Some(
                "A client certificate of the cluster CA named in `api_client_cert_names` \
                 (scopes `submit` and `read`)."
                    .into(),
            ),
            extensions: None,
        },
    );
    for (name, description) in COMMON {
        components.responses.insert(
            name.to_string(),
            RefOr::T(error_response(description, name == "RateLimited")),
        );
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            (axum::http::Method::GET, &mut item.get),
            (axum::http::Method::PUT, &mut item.put),
            (axum::http::Method::POST, &mut item.post),
            (axum::http::Method::DELETE, &mut item.delete),
            (axum::http::Method::PATCH, &mut item.patch),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                complete(op, &method, path, public.contains(path));
            }
        }
    }
    doc
}

/// Answers the middleware gives, shared by the operations (name, description).
const COMMON: [(&str, &str); 5] = [
    (
        "Unreadable",
        "`request.malformed_json` (the body is not JSON) or `request.unreadable`.",
    ),
    (
        "Unauthenticated",
        "`auth.missing` (no `Authorization: Bearer` header nor client certificate) or \
         `auth.invalid` (unknown or revoked token).",
    ),
    (
        "Forbidden",
        "`auth.scope`: the credential lacks the route's scope.",
    ),
    (
        "RateLimited",
        "`rate.limited`: the credential is over its rate; retry after `Retry-After` seconds.",
    ),
    (
        "TooLarge",
        "`request.too_large`: the body (or its declared `Content-Length`) is over \
         `max_body_bytes`.",
    ),
];

fn error_response(description: &str, retry_after: bool) -> Response {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ApiError"))),
    );
    if retry_after {
        let mut h = Header::new(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::Type::Integer),
        );
        h.description = Some("Seconds until the credential may ask again.".into());
        r = r.header("Retry-After", h);
    }
    r.build()
}

/// Adds an operation's security (from the scope the middleware checks) and the middleware's
/// answers.
fn complete(op: &mut Operation, method: &axum::http::Method, path: &str, public: bool) {
    let mut add = |status: &str, name: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    };
    add("413", "TooLarge");
    if op.request_body.is_some() {
        add("400", "Unreadable");
    }
    if public {
        op.security = Some(vec![]);
        return;
    }
    add("401", "Unauthenticated");
    add("403", "Forbidden");
    add("429", "RateLimited");
    let scope = required_scope(method, path);
    let mut security = vec![SecurityRequirement::new("bearer", [scope.as_str()])];
    if matches!(scope, Scope::Submit | Scope::Read) {
        security.push(SecurityRequirement::new("clientCert", [scope.as_str()]));
    }
    op.security = Some(security);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    /// `docs/openapi.json` is the generated document.
    #[test]
    fn openapi_committed_document_is_current() {
        let generated = json();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the document the code generates; update it with\n\
             \n    UPDATE_OPENAPI=1 cargo test -p coordinator openapi\n\n\
             and commit the result"
        );
    }

    /// Every operation has its security and the middleware's answers; public ones need none.
    #[test]
    fn openapi_operations_carry_security_and_middleware_answers() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 19, "{:?}", paths.keys());
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let codes = op["responses"].as_object().unwrap();
                assert!(codes.contains_key("413"), "{method} {path}");
                if op.get("requestBody").is_some() {
                    for c in ["400", "422"] {
                        assert!(codes.contains_key(c), "{method} {path} parses a body: {c}");
                    }
                }
                let public = ["/healthz", "/readyz", "/v1/openapi.json"].contains(&path.as_str());
                match public {
                    true => assert_eq!(op["security"], serde_json::json!([]), "{path}"),
                    false => {
                        for c in ["401", "403", "429"] {
                            assert!(codes.contains_key(c), "{method} {path}: {c}");
                        }
                        assert!(op["security"][0]["bearer"].is_array(), "{method} {path}");
                    }
                }
            }
        }
        let key = &doc["components"]["schemas"]["KeyInfo"]["properties"];
        assert!(
            key["chain_code"].is_object() && key["freeze"].is_object(),
            "{key}"
        );
    }
}
