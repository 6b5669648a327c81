//! The REST API: the top floor. Handlers parse and authorise, call the domain
//! ([`crate::intake`], [`crate::accounts`], [`crate::reserves`], the orchestrator and its store)
//! and map its answers to HTTP; the domain never imports anything from here.
//!
//! Every route is added together with its OpenAPI operation (`utoipa_axum::routes!`), so the
//! router and the served document (`GET /v1/openapi.json`, committed as `docs/openapi.json`)
//! cannot disagree.

mod accounts;
mod approvals;
pub mod error;
mod health;
mod keys;
mod keys_control;
mod keys_lifecycle;
mod metrics;
mod nodes;
pub mod openapi;
mod orders;
mod policy;
mod presignatures;
mod reserves;
mod sign_requests;
pub mod state;

use axum::{
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Extension, Router,
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use error::ApiFail;
pub use state::{ApiState, ClientCert};

use crate::auth::Outcome;

/// Routes that need no credential.
fn public_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve))
}

/// Routes behind [`auth`]: each needs a credential with the scope [`crate::auth::required_scope`]
/// names.
fn authed_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(keys::create_key))
        .routes(routes!(keys::get_key))
        .routes(routes!(keys_control::freeze))
        .routes(routes!(keys_control::unfreeze))
        .routes(routes!(keys_control::unlock))
        .routes(routes!(keys_lifecycle::refresh))
        .routes(routes!(keys_lifecycle::reshare))
        .routes(routes!(
            presignatures::get_pool,
            presignatures::set_pool_depth
        ))
        .routes(routes!(accounts::create, accounts::list))
        .routes(routes!(accounts::get))
        .routes(routes!(reserves::create))
        .routes(routes!(reserves::get))
        .routes(routes!(sign_requests::create_sign_request))
        .routes(routes!(sign_requests::get_sign_request))
        .routes(routes!(approvals::add_approvals))
        .routes(routes!(approvals::cancel))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(policy::get_policy, policy::push_policy))
        .routes(routes!(metrics::metrics))
}

/// One route the router serves: method, path (as the OpenAPI document writes it) and the scope
/// a credential needs (`None`: the route needs no credential).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteScope {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template, e.g. `/v1/keys/{key_id}`.
    pub path: String,
    /// What [`auth`] requires ([`crate::auth::required_scope`]); `None` for public routes.
    pub scope: Option<crate::auth::Scope>,
}

/// Every route of [`router`] with the scope it requires, from the same route lists (each route
/// is added with its operation, so this is also every operation of the OpenAPI document).
/// `docs/api.md`'s scope table is compared with it.
pub fn routes() -> Vec<RouteScope> {
    let mut out = Vec::new();
    for (public, r) in [(true, public_routes()), (false, authed_routes())] {
        for (path, item) in r.into_openapi().paths.paths {
            use axum::http::Method;
            let ops = [
                (Method::GET, item.get.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::OPTIONS, item.options.is_some()),
                (Method::HEAD, item.head.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::TRACE, item.trace.is_some()),
            ];
            for (method, present) in ops {
                if present {
                    out.push(RouteScope {
                        method: method.as_str().to_string(),
                        path: path.clone(),
                        scope: (!public).then(|| crate::auth::required_scope(&method, &path)),
                    });
                }
            }
        }
    }
    out.sort();
    out
}

/// Builds the router.
pub fn router(state: ApiState, max_body: usize) -> Router {
    let (authed, _) = authed_routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .split_for_parts();
    let (public, _) = public_routes().split_for_parts();
    public
        .merge(authed)
        .fallback(|| async {
            ApiFail::new(StatusCode::NOT_FOUND, "route.not_found", "no such endpoint")
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(
            move |req: axum::extract::Request, next: Next| {
                refuse_declared_oversize(req, next, max_body)
            },
        ))
        .with_state(state)
}

/// Answers 413 from the `Content-Length` header alone, before reading (or allocating) the body.
async fn refuse_declared_oversize(req: axum::extract::Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let msg = format!("request body is over the {max}-byte limit");
        let mut resp =
            ApiFail::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", msg).into_response();
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return resp;
    }
    next.run(req).await
}

async fn auth(
    axum::extract::State(st): axum::extract::State<ApiState>,
    cert: Option<Extension<ClientCert>>,
    headers: HeaderMap,
    mut req: axum::extract::Request,
    next: Next,
) -> Response {
    let need = crate::auth::required_scope(req.method(), req.uri().path());
    let cert_name = cert.and_then(|c| c.0 .0.clone());
    let token = headers.get(header::AUTHORIZATION).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
    });
    let path = req.uri().path().to_string();
    let denied = |status: StatusCode, code: &str, msg: String, who: Option<&str>| {
        st.orch.control.record(
            "auth.denied",
            serde_json::json!({"path": path, "code": code, "credential": who}),
        );
        ApiFail::new(status, code, msg).into_response()
    };
    match st.auth.check(token, cert_name.as_deref(), need) {
        Outcome::Allowed(id) => {
            req.extensions_mut().insert(crate::auth::CredentialId(id));
            next.run(req).await
        }
        Outcome::Missing => denied(
            StatusCode::UNAUTHORIZED,
            "auth.missing",
            "missing `Authorization: Bearer <token>` header".into(),
            None,
        ),
        Outcome::Invalid => denied(
            StatusCode::UNAUTHORIZED,
            "auth.invalid",
            "the API token is not valid".into(),
            None,
        ),
        Outcome::Forbidden { id, scope } => denied(
            StatusCode::FORBIDDEN,
            "auth.scope",
            format!("credential `{id}` lacks the `{}` scope", scope.as_str()),
            Some(&id),
        ),
        Outcome::Limited { id, retry_after } => {
            tracing::warn!(credential = %id, "rate limited");
            let mut resp = ApiFail::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate.limited",
                format!("credential `{id}` is over its rate; retry in {retry_after} s"),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::{path::Path, sync::Arc};

    use tower::ServiceExt;

    use super::*;

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// Whether `text` imports anything of the `api` module of this crate: `crate::api…`, or
    /// `api` inside a `use crate::{…}` group.
    fn imports_api(text: &str) -> bool {
        let flat: String = text.split_whitespace().collect();
        if flat.contains("crate::api") {
            return true;
        }
        let mut rest = flat.as_str();
        while let Some(at) = rest.find("crate::{") {
            rest = &rest[at + "crate::{".len()..];
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in rest.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && depth == 0 => {
                        let item = &rest[i..];
                        if item.starts_with("api::") || item.starts_with("api,") {
                            return true;
                        }
                        item_start = false;
                    }
                    _ => {}
                }
            }
        }
        false
    }

    /// The domain (every module outside `src/api/`) never imports the API: the floors stay
    /// apart, and the old circle (handlers ⇄ request driver through `ApiFail`) cannot return.
    #[test]
    fn floors_domain_never_imports_the_api() {
        assert!(imports_api(
            "use crate::{\n    api::{internal, ApiFail},\n    control::x,\n};"
        ));
        assert!(imports_api("let x = crate::api::ApiState;"));
        assert!(!imports_api(
            "use crate::{accounts::{api, x}, store::KeyRecord};"
        ));
        assert!(!imports_api("use proto::{api::ApiError};"));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        assert!(files.len() > 10);
        let api_dir = src.join("api").display().to_string();
        let allowed = [src.join("lib.rs"), src.join("main.rs")].map(|p| p.display().to_string());
        for (path, text) in &files {
            if path.starts_with(&api_dir) || allowed.contains(path) {
                continue;
            }
            assert!(!imports_api(text), "{path} imports the API layer");
        }
    }

    /// No route is added to a router without its documented operation (`routes!`): plain
    /// routing calls appear nowhere in the crate.
    #[test]
    fn openapi_no_route_bypasses_the_documentation() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let forbidden =
            [".route", ".route_service", ".nest", ".nest_service"].map(|m| m.to_string() + "(");
        for (path, text) in &files {
            for f in &forbidden {
                assert!(
                    !text.contains(f.as_str()),
                    "{path} adds a route with `{f}`: use `routes!`"
                );
            }
        }
    }

    fn test_state(name: &str) -> ApiState {
        let dir = std::env::temp_dir().join(format!("coord-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(crate::store::Store::open(&dir).unwrap());
        let registry = Arc::new(crate::registry::Registry::default());
        let audit = runtime::audit::AuditLog::open(&dir.join("audit.jsonl")).unwrap();
        let control = Arc::new(crate::control::Control::new(
            store.clone(),
            registry.clone(),
            runtime::audit::SharedAudit::new(audit),
        ));
        let orch = crate::orchestrator::Orchestrator::new(
            store,
            registry,
            crate::config::Limits::default(),
            control,
        );
        ApiState {
            orch: Arc::new(orch),
            auth: Arc::new(crate::auth::Authenticator::new(vec![], vec![], None, 100)),
        }
    }

    /// Every documented operation is routed: guarded ones answer 401 without a credential,
    /// public ones answer; an undocumented path is `404 route.not_found`.
    #[tokio::test]
    async fn openapi_every_documented_operation_is_routed() {
        let app = router(test_state("routes"), 1 << 16);
        let doc: serde_json::Value = serde_json::from_str(openapi::json()).unwrap();
        let mut seen = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let uri = path.replace('{', "x").replace('}', "");
                let req = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let status = app.clone().oneshot(req).await.unwrap().status();
                let public = op["security"] == serde_json::json!([]);
                match public {
                    true => assert!(status.is_success(), "{method} {path}: {status}"),
                    false => assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}"),
                }
                seen += 1;
            }
        }
        assert!(seen >= 22, "{seen} operations");
        // `routes()` lists exactly these operations, public ones without a scope.
        let listed = routes();
        assert_eq!(listed.len(), seen);
        for r in &listed {
            let op = &doc["paths"][&r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{r:?}");
            match r.scope {
                None => assert_eq!(op["security"], serde_json::json!([]), "{r:?}"),
                Some(s) => assert_eq!(op["security"][0]["bearer"][0], s.as_str(), "{r:?}"),
            }
        }
        let req = axum::http::Request::builder()
            .uri("/v1/undocumented")
            .body(axum::body::Body::empty())
            .unwrap();
        let status = app.oneshot(req).await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
